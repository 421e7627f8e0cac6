; The machine's constants for guest software: ports, register bits, vectors (docs/architecture.md, docs/devices.md).
; (To become a generated file: the names and values are those of the manual.)
.equ PIC_CMD, 0x20                     ; devices.md §3
.equ PIC_MASK, 0x21
.equ PIC_IRR, 0x22
.equ PIC_BASE, 0x23
.equ PIC_EOI, 0x20
.equ TIMER_COUNT, 0x40                 ; devices.md §4
.equ TIMER_CTRL, 0x41
.equ TIMER_NOW, 0x42
.equ TIMER_ENABLE, 1
.equ TIMER_PERIODIC, 2
.equ POST_CODE, 0x80                   ; devices.md: the POST/diagnostic port
.equ CONSOLE_DATA, 0x3f8               ; devices.md §5
.equ CONSOLE_STATUS, 0x3f9
.equ CONSOLE_CTRL, 0x3fa
.equ CONSOLE_RX_IRQ, 1
.equ DISK_SECTOR, 0x1f0                ; devices.md §6
.equ DISK_COUNT, 0x1f1
.equ DISK_ADDR, 0x1f2
.equ DISK_CMD, 0x1f3
.equ DISK_SIZE, 0x1f4
.equ DISK_CMD_ACK, 0
.equ DISK_CMD_READ, 1
.equ DISK_CMD_WRITE, 2
.equ DISK_STATUS_IDLE, 0
.equ DISK_STATUS_BUSY, 1
.equ DISK_STATUS_DONE, 2
.equ DISK_STATUS_ERROR, 3
.equ DISK_MAX_COUNT, 128
.equ SECTOR_SIZE, 512
.equ RESULT_EXIT, 0x500                ; devices.md §7

.equ TIMER_IRQ, 0                      ; PIC lines (architecture.md §11)
.equ CONSOLE_IRQ, 4
.equ DISK_IRQ, 14
.equ VEC_TIMER, 32                     ; their vectors with the reset PIC_BASE of 32
.equ VEC_CONSOLE, 36
.equ VEC_DISK, 46

.equ FLAGS_TF, 1 << 8                  ; architecture.md §2
.equ FLAGS_IF, 1 << 9
.equ FLAGS_IOPL, 3 << 12
.equ CR0_PE, 1
.equ CR0_TS, 1 << 3
.equ CR0_WP, 1 << 4
.equ CR0_PG, 1 << 15
.equ CR4_PL4, 2                        ; CR4_PL = 2: 4-level paging
.equ CR4_TSD, 1 << 2
.equ CR4_PGE, 1 << 7
.equ MSR_TSC, 0x10
.equ MSR_RSP0, 0x100
.equ MSR_RSP1, 0x101
.equ MSR_RSP2, 0x102

.equ PAGE_SIZE, 4096                   ; architecture.md §7
.equ PTE_P, 1
.equ PTE_W, 1 << 1
.equ PTE_U, 1 << 2
.equ PTE_A, 1 << 5
.equ PTE_D, 1 << 6
.equ PTE_PS, 1 << 7
.equ PTE_G, 1 << 8
.equ PTE_NX, 1 << 63
.equ PTE_FRAME, 0x000ffffffffff000
.equ PF_P, 1                           ; architecture.md §7.5
.equ PF_W, 1 << 1
.equ PF_U, 1 << 2
.equ PF_RSVD, 1 << 3
.equ PF_I, 1 << 4

.equ GATE_SIZE, 16                     ; architecture.md §6.2
.equ GATE_P, 1
.equ GATE_TRAP, 1 << 1                 ; GATE_TYPE = 1: keeps FLAGS.IF
.equ GATE_DPL3, 3 << 4
.equ VEC_DE, 0                         ; architecture.md §6.1
.equ VEC_DB, 1
.equ VEC_UD, 6
.equ VEC_DF, 8
.equ VEC_GP, 13
.equ VEC_PF, 14
.equ VEC_AC, 17
.equ VEC_MC, 18
