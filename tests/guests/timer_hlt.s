; A periodic timer wakes a halted CPU three times; the guest prints the low byte of
; TIMER_NOW at each wake-up and exits with the number of ticks it counted (3).
.equ PIC_CMD, 0x20
.equ PIC_MASK, 0x21
.equ TIMER_COUNT, 0x40
.equ TIMER_CTRL, 0x41
_start: li sp, 0x9000
        li r1, 0x8000
        lidt r1
        li r2, 0x8000 + 16 * 32     ; IRQ 0 -> vector 32
        la r3, tick
        sd r3, [r2]
        li r3, 1                    ; present interrupt gate, ring 0
        sd r3, [r2 + 8]
        li r1, 0xfffe
        out PIC_MASK, r1            ; unmask IRQ 0
        li r1, 5000
        out TIMER_COUNT, r1
        li r1, 3                    ; enable, periodic
        out TIMER_CTRL, r1
wait:   sti
        hlt
        in r6, 0x42                 ; TIMER_NOW: the guest sees its own clock
        andi r6, r6, 0xff
        out 0x3f8, r6
        li r5, 3
        bltu r4, r5, wait
        mov r2, r4
        out 0x500, r2
tick:   addi r4, r4, 1
        li r1, 0x20
        out PIC_CMD, r1             ; EOI
        iret
