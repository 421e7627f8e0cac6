; The paravirtual port of conformance/guests/dma_sweep.s: block requests whose buffers are every 64 KiB of machine memory outside its own, up to 18 MiB.
;
; Reads (disk -> memory) that would overwrite another VM, the VMM or the host, and writes
; (memory -> disk) that would copy their memory onto its own disk, 128 sectors each, first every
; read, then every write; each must be refused with PV_ENOTOWNED (docs/paravirt-abi.md §9: a
; buffer outside the guest's memory), nothing moved.  The buffers are machine addresses (§1):
; [0, mem_base) and [mem_base + mem_size, SWEEP_END), so the sweep crosses the other VMs
; whether it runs first or second.  r1 = requests refused with PV_ENOTOWNED, r2 = requests
; ending otherwise, r4 = the end of the sweep.
.include "lib/directed.s"
.equ SWEEP_END, 0x1200000              ; 18 MiB: past the 16 MiB + canary host of the suite
.equ STRIDE, 0x10000                   ; BLK_MAX_SECTORS sectors: 64 KiB a request
main:
        la      r10, start_info
        ld      r10, [r10]
        ld      r11, [r10 + START_MEM_BASE]
        ld      r12, [r10 + START_MEM_SIZE]
        add     r12, r12, r11          ; the end of its memory (machine)
        ld      r5, [r10 + START_BLOCK_RING]
        li      r1, 0
        li      r2, 0
        li      r8, BLK_OP_READ        ; the first pass reads, the second writes
pass:   li      r4, 0
sweep:  bltu    r4, r11, one           ; below its memory
        bltu    r4, r12, next          ; its own memory: not swept
one:    ld      r9, [r5 + BLK_REQ_PROD]
        andi    r3, r9, BLK_RING_SIZE - 1
        shli    r6, r3, 5
        add     r6, r6, r5
        sd      r9, [r6 + BLK_REQUESTS + BLK_REQ_ID]
        sw      r8, [r6 + BLK_REQUESTS + BLK_REQ_OP]
        li      r7, BLK_MAX_SECTORS
        sw      r7, [r6 + BLK_REQUESTS + BLK_REQ_COUNT]
        sd      r0, [r6 + BLK_REQUESTS + BLK_REQ_SECTOR]
        sd      r4, [r6 + BLK_REQUESTS + BLK_REQ_BUFFER]
        addi    r9, r9, 1
        sd      r9, [r5 + BLK_REQ_PROD]
        push    r1
        li      r1, PORT_BLOCK
        hypercall HYPERCALL_EVTCHN_SEND ; served during the send (§9)
        pop     r1
        shli    r6, r3, 4              ; its response, in the same slot
        add     r6, r6, r5
        ld      r7, [r6 + BLK_RESPONSES + BLK_RSP_STATUS]
        addi    r7, r7, PV_ENOTOWNED
        bnez    r7, other
        addi    r1, r1, 1
        jmp     next
other:  addi    r2, r2, 1
next:   li      r6, STRIDE
        add     r4, r4, r6
        li      r6, SWEEP_END
        bltu    r4, r6, sweep
        li      r6, BLK_OP_WRITE
        beq     r8, r6, done
        mov     r8, r6
        jmp     pass
done:   li      r3, 0
        li      r5, 0
        li      r6, 0
        li      r7, 0
        li      r8, 0
        jmp     finish
.include "lib/end.s"
