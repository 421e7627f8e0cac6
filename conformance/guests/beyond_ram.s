; Mechanism: the CPU touching guest-physical memory at or beyond the end of RAM raises #MC
; (docs/architecture.md §5.1, §7.3), logged and skipped: a load and a store with paging off at
; RAM_END, the last quadword of RAM (fine), a PTE whose frame is beyond RAM (the walk succeeds
; and sets A, §7.5; the access is #MC), a page table beyond RAM (the walk's own read is #MC, so
; nothing is set), the same PTE used from ring 3.
; r1 = the last quadword of RAM, r2 = its top byte, r3 = 0x5a5a (its load was #MC),
; r4 = PT[0] after its use, r5 = the last quadword through PT[1], r6 = PD[2] after its use,
; r7 = 0x5a5a, r8 = PT[0] after ring 3.
.include "lib/prelude.s"
.include "lib/paging.s"
main:
        gate    18, h_mc_log, GATE_P
        li      r9, RAM_END - 8
        li      r10, 0x1122334455667788
        sd      r10, [r9]
        ld      r1, [r9]
        lbu     r2, [r9 + 7]
        li      r3, 0x5a5a
        li      r7, 0x5a5a
        li      r9, RAM_END
        ld      r3, [r9]               ; #MC
        sb      r10, [r9]              ; #MC
        li      r9, RAM_END + 0x10000
        sd      r10, [r9]              ; #MC
        call    paging_on
        li      r9, PT
        li      r10, RAM_END | PTE_PWU
        sd      r10, [r9]              ; PAGED_VA -> the first frame beyond RAM
        li      r10, RAM_END - 0x1000 | PTE_P | PTE_W
        sd      r10, [r9 + 8]          ; PAGED_VA + 0x1000 -> the last frame of RAM
        li      r9, PAGED_VA
        ld      r7, [r9]               ; #MC
        ld      r5, [r9 + 0x1ff8]
        li      r9, PT
        ld      r4, [r9]
        li      r9, PD
        li      r10, RAM_END + 0x3000 | PTE_PWU
        sd      r10, [r9 + 16]         ; VA 0x400000 -> a page table beyond RAM
        li      r9, 0x400000
        sd      r0, [r9]               ; #MC in the walk
        li      r9, PD
        ld      r6, [r9 + 16]
        enter_user 0, back
        li      r9, PAGED_VA
        sd      r0, [r9 + 8]           ; #MC at CPL 3
        int     VEC_BACK
back:   li      r9, PT
        ld      r8, [r9]
        jmp     finish

log_stub h_mc_log, 18, skip_noerr
.include "lib/signature.s"
