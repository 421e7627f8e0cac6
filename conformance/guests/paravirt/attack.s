; A directed paravirtual adversary beside the victim (conformance/test_safety.py): mmu_update, set_cr3, pins, trap tables and block requests aimed at the victim's frames, the VMM's pages and its own page tables.
;
; It runs as the first VM, so that the victim's memory is the frames right after its own: its
; mem_base + mem_size (start info, docs/paravirt-abi.md §3).  Every attempt must be refused
; with its code (§10) and change nothing; each records r1 (and r2 where a refusal names an
; index) as a little-endian quadword, the block requests their responses' statuses, and at the
; end the entries it attacked read back; the whole record is written with one console_write.
; The test (conformance/test_safety.py ATTACKS) names the code of each from conformance.paravirt.
.include "lib/directed.s"

.equ RESULTS, 0x70000
.equ SCRATCH, 0x60000                  ; an ordinary page whose bootstrap L1 entry is attacked
.equ NEW_L4, 0x61000                   ; an ordinary page made an L4 with a VMM slot present
.equ TABLE, 0x62000                    ; trap tables to be refused
.equ VMM_IDT, 0xfffffffffffff000       ; where the VMM maps the machine's IDT (slot 511)
.equ BLOCK_ATTACKS, 8                  ; block requests made (their responses are recorded)

; rec reg: append reg to the record (r6 is its cursor: hypercalls keep it).
.macro rec reg
        sd      \reg, [r6]
        addi    r6, r6, 8
.endm

; mmu1 ptr, val: mmu_update of one request (registers); records r1 and r2.
.macro mmu1 ptr, val
        li      r9, REQUESTS
        sd      \ptr, [r9 + MMU_REQ_PTR]
        sd      \val, [r9 + MMU_REQ_VAL]
        li      r1, REQUESTS
        li      r2, 1
        hypercall HYPERCALL_MMU_UPDATE
        rec     r1
        rec     r2
.endm

; call2 n, a1, a2: hypercall n with r1 = a1, r2 = a2 (registers); records r1 and r2.
.macro call2 n, a1, a2
        mov     r1, \a1
        mov     r2, \a2
        hypercall \n
        rec     r1
        rec     r2
.endm

; blkreq op, buffer, count: a block request of `count` sectors from sector 0 with the
; machine buffer `buffer`.
.macro blkreq op, buffer, count
        ld      r9, [r5 + BLK_REQ_PROD]
        andi    r1, r9, BLK_RING_SIZE - 1
        shli    r1, r1, 5
        add     r1, r1, r5
        sd      r9, [r1 + BLK_REQUESTS + BLK_REQ_ID]
        li      r2, \op
        sw      r2, [r1 + BLK_REQUESTS + BLK_REQ_OP]
        li      r2, \count
        sw      r2, [r1 + BLK_REQUESTS + BLK_REQ_COUNT]
        sd      r0, [r1 + BLK_REQUESTS + BLK_REQ_SECTOR]
        sd      \buffer, [r1 + BLK_REQUESTS + BLK_REQ_BUFFER]
        addi    r9, r9, 1
        sd      r9, [r5 + BLK_REQ_PROD]
.endm

main:
        li      r6, RESULTS
        la      r10, start_info
        ld      r10, [r10]
        ld      r11, [r10 + START_MEM_BASE]
        ld      r12, [r10 + START_MEM_SIZE]
        rec     r11                    ; where its memory is, and the victim's (below)
        ld      r14, [r10 + START_PT_BASE]
        add     r14, r14, r11          ; its bootstrap L4 (machine); the L3, L2 and L1 follow
        li      r3, 3 * 4096 + 8 * (SCRATCH >> 12)
        add     r8, r14, r3            ; the bootstrap L1's entry of SCRATCH (machine)
        add     r13, r11, r12          ; the victim's first frame: right after its own memory
        rec     r13
        li      r3, 3 * 4096           ; its L1 (machine)
        add     r3, r14, r3

        ; ---- its own page tables ----
        ori     r4, r3, PTE_P | PTE_W  ; 1. a writable mapping of its L1
        mmu1    r8, r4
        ori     r4, r14, PTE_P | PTE_W ; 2. of its L4
        mmu1    r8, r4
        ; ---- the victim's frames ----
        ori     r4, r13, PTE_P | PTE_W ; 3. map the victim's first frame writable
        mmu1    r8, r4
        li      r4, PML4 | PTE_P       ; 4. map the victim's page table read-only
        add     r4, r4, r13
        mmu1    r8, r4
        ld      r9, [r10 + START_PT_BASE]
        ld      r12, [r9 + 8 * 511]    ; the VMM's slot 511 names its own L3 (a machine frame)
        li      r4, PTE_FRAME
        and     r12, r12, r4
        ori     r4, r12, PTE_P         ; 5. map the VMM's L3 read-only
        mmu1    r8, r4
        ori     r3, r12, MMU_CMD_PIN   ; 6. pin the VMM's L3 as its own
        li      r4, 3
        mmu1    r3, r4
        li      r3, PML4               ; 7. write an entry of the victim's L4 directly
        add     r3, r3, r13
        ori     r4, r13, PTE_P | PTE_W
        mmu1    r3, r4
        ori     r3, r3, MMU_CMD_PIN    ; 8. pin a page of the victim's
        li      r4, 4
        mmu1    r3, r4
        li      r3, PT_LOW | MMU_CMD_UNPIN ; 9. unpin the victim's L1
        add     r3, r3, r13
        mmu1    r3, r0
        li      r3, PDPT               ; 10. its L4 slot 1 naming the victim's L3
        add     r4, r3, r13
        ori     r4, r4, PTE_P | PTE_W
        addi    r3, r14, 8
        mmu1    r3, r4
        li      r3, 2 * 4096 + 8       ; 11. a 2 MiB page over the victim in its L2
        add     r3, r14, r3
        ori     r4, r13, PTE_P | PTE_W | PTE_PS
        mmu1    r3, r4
        li      r3, PML4               ; 12. set_cr3 to the victim's L4
        add     r3, r3, r13
        call2   HYPERCALL_SET_CR3, r3, r0
        call2   HYPERCALL_SET_CR3, r14, r3 ; 13. the victim's L4 as user base
        ; ---- the VMM's pages ----
        addi    r3, r14, 8 * 256       ; 14. the VMM's top-level slot 256 onto the victim
        ori     r4, r13, PTE_P | PTE_W
        mmu1    r3, r4
        addi    r3, r14, 8 * 511       ; 15. the VMM's slot 511 (its IDT's tables) cleared
        mmu1    r3, r0
        li      r3, NEW_L4             ; 16. an L4 whose slot 256 is present: read-only, then pinned
        li      r4, 4096
        add     r4, r14, r4
        ori     r4, r4, PTE_P | PTE_W
        sd      r4, [r3 + 8 * 256]
        li      r9, REQUESTS
        li      r3, 3 * 4096 + 8 * (NEW_L4 >> 12)
        add     r3, r14, r3
        sd      r3, [r9 + MMU_REQ_PTR]
        li      r4, NEW_L4 | PTE_P
        add     r4, r4, r11
        sd      r4, [r9 + MMU_REQ_VAL]
        ori     r3, r4, MMU_CMD_PIN
        xori    r3, r3, PTE_P
        sd      r3, [r9 + MMU_REQ_SIZE + MMU_REQ_PTR]
        li      r4, 4
        sd      r4, [r9 + MMU_REQ_SIZE + MMU_REQ_VAL]
        li      r1, REQUESTS
        li      r2, 2
        hypercall HYPERCALL_MMU_UPDATE
        rec     r1
        rec     r2
        li      r3, TABLE              ; 17. a trap-table handler in the VMM's half (its IDT)
        li      r4, VMM_IDT
        sd      r4, [r3 + 16 * 40]
        li      r4, INTERRUPT_GATE
        sd      r4, [r3 + 16 * 40 + 8]
        call2   HYPERCALL_SET_TRAP_TABLE, r3, r0
        li      r3, TABLE + 16 * 40    ; 18. a gate at the hypercall vector
        sd      r0, [r3]
        sd      r0, [r3 + 8]
        la      r4, main
        li      r3, TABLE + 16 * PV_HYPERCALL_VECTOR
        sd      r4, [r3]
        li      r4, INTERRUPT_GATE
        sd      r4, [r3 + 8]
        li      r3, TABLE
        call2   HYPERCALL_SET_TRAP_TABLE, r3, r0
        li      r3, VMM_IDT            ; 19. the VMM's IDT read as a trap table
        call2   HYPERCALL_SET_TRAP_TABLE, r3, r0
        li      r4, 16                 ; 20. the VMM's IDT written to the console
        call2   HYPERCALL_CONSOLE_WRITE, r3, r4
        li      r4, 1                  ; 21. requests read from the VMM's IDT
        call2   HYPERCALL_MMU_UPDATE, r3, r4
        ld      r3, [r10 + START_SHARED_INFO] ; 22. pin the shared info page
        add     r3, r3, r11
        ori     r3, r3, MMU_CMD_PIN
        li      r4, 1
        mmu1    r3, r4
        ori     r3, r14, MMU_CMD_UNPIN ; 23. unpin its current base
        mmu1    r3, r0

        ; ---- block requests: DMA into the victim, out of it, into a table, around its memory ----
        ld      r5, [r10 + START_BLOCK_RING]
        blkreq  BLK_OP_READ, r13, 1    ; 24. into the victim's first frame
        li      r3, DATA               ; 25. from the victim's data onto its own disk
        add     r3, r3, r13
        blkreq  BLK_OP_WRITE, r3, 1
        li      r3, 3 * 4096           ; 26. into its own L1, a pinned table
        add     r3, r14, r3
        blkreq  BLK_OP_READ, r3, 1
        blkreq  BLK_OP_READ, r12, 1    ; 27. into the VMM's L3
        li      r3, 256                ; 28. across the end of its memory into the victim's
        sub     r3, r13, r3
        blkreq  BLK_OP_READ, r3, 1
        li      r3, DATA               ; 29. into its own data: served
        add     r3, r3, r11
        blkreq  BLK_OP_READ, r3, 1
        li      r3, 512                ; 30, 31. two sectors from its last into the victim's first:
        sub     r3, r13, r3            ; the whole buffer is checked, not its first sector (§9)
        blkreq  BLK_OP_WRITE, r3, 2
        blkreq  BLK_OP_READ, r3, 2
        li      r1, PORT_BLOCK
        hypercall HYPERCALL_EVTCHN_SEND
        rec     r1
        ld      r9, [r5 + BLK_RSP_PROD]
        rec     r9
        li      r3, 0
responses:
        shli    r4, r3, 4
        add     r4, r4, r5
        ld      r9, [r4 + BLK_RESPONSES + BLK_RSP_ID]
        rec     r9
        ld      r9, [r4 + BLK_RESPONSES + BLK_RSP_STATUS]
        rec     r9
        addi    r3, r3, 1
        li      r4, BLOCK_ATTACKS
        bltu    r3, r4, responses

        ; ---- what it attacked, read back ----
        li      r3, 3 * 4096 + 8 * (SCRATCH >> 12)
        ld      r9, [r10 + START_PT_BASE]
        add     r3, r3, r9
        ld      r9, [r3]               ; the SCRATCH entry: as the VMM wrote it at the start
        rec     r9
        ld      r3, [r10 + START_PT_BASE]
        ld      r9, [r3 + 8]           ; L4 slot 1: empty
        rec     r9
        ld      r9, [r3 + 8 * 256]     ; L4 slot 256: empty
        rec     r9
        ld      r9, [r3 + 8 * 511]     ; L4 slot 511: the VMM's, present
        rec     r9
        li      r1, RESULTS
        sub     r2, r6, r1
        hypercall HYPERCALL_CONSOLE_WRITE
        shutdown r0
.include "lib/end.s"
