; The paravirtual port of conformance/guests/victim.s, the victim of the safety tests beside a paravirtual VMM's adversaries.
;
; Paging (its own pinned tables, lib/end.s paging_on), timer events (set_timer re-armed, the
; timer's port bound to interrupt 32), a block-ring read (its DMA into SECTOR, the event bound
; to 46), and a word in every page of its memory that no other part of it uses: the image, the
; page tables, the trap table, the mmu_update batch and signature pages, PATTERN and SECTOR,
; and the PV area at the top of its memory (start info, the shared pages the VMM writes, the
; bootstrap tables: docs/paravirt-abi.md §3).  It reads them all back into a checksum at the
; end, so that a neighbour's stray write into any of them changes its console; the suite also
; compares its whole memory with its run alone (conformance/test_safety.py).  r1 = timer
; events counted (3), r2 = checksum of the pattern, r3 = checksum of the sector read, r4 = the
; disk's final status (2, done), r5 = checksum of the pages.  Its set of pages is not the native
; victim's (the PV area, PT_LOW), so r5 differs from it: its reference is its solo run.
.include "lib/directed.s"
.include "../lib/victim_work.s"

; skip_own next (lib/victim_work.s skip_used): to `next` for PT_LOW, the trap table, the
; requests and the signature's pages, PATTERN and SECTOR, and the PV area (docs/paravirt-abi.md §3).
.macro skip_own next
        li      r10, PT_LOW
        beq     r6, r10, \next         ; the L1 of the first 2 MiB
        li      r10, IDT
        bltu    r6, r10, c3\@
        li      r10, SIGBUF + 0x1000
        bltu    r6, r10, \next         ; the trap table, the requests, the signature's text
c3\@:   li      r10, DATA
        bltu    r6, r10, c4\@
        li      r10, DATA + 0x2000
        bltu    r6, r10, \next         ; PATTERN and SECTOR
c4\@:   la      r10, start_info
        ld      r10, [r10]
        bgeu    r6, r10, \next         ; the PV area
.endm

main:
        call    paging_on
        mark_pages
        bind_irq PORT_TIMER, h_timer
        bind_irq PORT_BLOCK, disk_irq
        unmask  PORT_TIMER
        unmask  PORT_BLOCK
        li      r13, 700
        call    timer_periodic
        ev_sti
        fill_pattern
        li      r3, 1                  ; read sector 1 into SECTOR
        disk_set disk_sector, r3
        disk_set disk_count, r3
        li      r3, SECTOR
        disk_set disk_addr, r3
        li      r13, 1
        call    disk_start
        sum_pattern
wait:   block                          ; until three ticks and the disk are done
        la      r1, ticks
        ld      r1, [r1]
        la      r5, disk_flag
        ld      r5, [r5]
        beqz    r5, wait
        li      r5, 3
        bltu    r1, r5, wait
        ev_cli
        li      r13, 0
        call    timer_periodic
        mask_all
        la      r4, disk_status
        ld      r4, [r4]
        finish_sums

h_timer:                               ; count up to 3, then leave the rest uncounted
        la      r13, ticks
        ld      r14, [r13]
        li      r12, 3
        bgeu    r14, r12, t_done
        addi    r14, r14, 1
        sd      r14, [r13]
        li      r13, 32
        call    log_event
t_done: ret

.align 8
ticks:  .quad 0
.include "lib/end.s"
.align 4096
victim_end:
