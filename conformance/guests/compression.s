; Adversary: a guest kernel that maps its own frames over the top 1 MiB of the linear address
; space and reads every quadword there, looking for a VMM's pages (address-space compression,
; docs/architecture.md §4.3; Adams & Agesen 2006 §3; the safety test conformance/test_compression.py).
;
; A software VMM keeps its IDT, and a binary translator its translation cache, mapped at the top
; of every guest address space.  On a bare machine the guest sees there only what it mapped: its
; own frames, filled with a pattern.  Under a VMM whose pages are reachable, the guest kernel
; reads bytes that are not its own.  4-level paging (§7), every probed page a 4 KiB page of its
; own, writable and user-accessible: U lets the CPL 3 pass read it, and changes nothing for the
; others (§7.4: supervisor accesses, CPL 0-2, do not check U).  A VMM maps its own pages there
; supervisor, so ring 3 should never see them, whatever protects them from the guest kernel.
;
; Memory map (3 MiB of RAM; guest-physical = linear below 4 MiB, identity-mapped by two 2 MiB
; pages; the prelude's map below 1 MiB: code from 0x1000, PML4/PDPT/PD at 0x10000-0x12fff, IDT
; 0x20000, stacks 0x30000 and 0x40000):
;   0x060000-0x07ffff  page tables of the probed ranges, allocated in order (map_page)
;   0x080000-0x081fff  the records of one pass: the first differing quadword of each page
;   0x100000-0x1fffff  the 256 frames behind the top 1 MiB (TOP_VA + 4 KiB i -> 0x100000 + 4 KiB i)
;   0x200000-0x2fffff  the frames behind a second probed range (extra_range, below), if any
;
; Probed ranges: the top 1 MiB, 0xffff_ffff_fff0_0000 to the end, whatever the VMM says (the most
; a VMM may declare as reserved: conformance/checks.py RESERVED_RANGE_LIMIT); and `extra_range`,
; empty here, which the test patches with the part of the VMM's declared reserved range that lies
; elsewhere (at most 256 pages, at or above 4 MiB, canonical).
;
; Patterns: the quadword at probed linear address a holds a ^ PATTERN1 (filled through the
; identity map of its frame, never through a); the write passes store a ^ PATTERN2 through a.
; Both constants have their low 12 bits clear, so within a page the pattern is the page's value
; plus the offset, and a page's quadwords sum to 512 * (page ^ K) + PAGE_OFFSETS_SUM.
;
; Passes, each over every probed page (`probe`, which uses no I/O and no privileged
; instruction, so that it runs at any CPL).  The fill runs with paging still off (guest-physical =
; frame); the others with paging on, each reported at CPL 0 on the console.  A full pass touches
; every quadword; a sampled one the last quadword of each eighth of a page (offsets 0x1f8 +
; 0x200 k).  Paging maps whole pages, so a VMM's page shows in every sample; sampling keeps the
; other passes cheap where each access costs a page walk in software (the full emulator).
;   (fill)     store pattern 1 at every quadword of the frames
;   cpl0       read every quadword of pattern 1 through a, at CPL 0
;   cpl1       sample pattern 1 through a at CPL 1, entered by iret
;   cpl2       the same at CPL 2, entered by iret
;   cpl3       the same at CPL 3, entered by iret: a user access, which no VMM has a reason to let
;              reach its pages (no segment limit or ring compression needed: paging's U bit)
;   (write)    store pattern 2 at the samples through a, at CPL 0 (a VMM must emulate it into the
;              guest's own memory)
;   cpl0 back  sample pattern 2 back through a, at CPL 0
;   frames     sample pattern 2 through the identity map of the frames: the writes are the guest's
; A report is "<pass>: sum=<hex>" (every quadword read, summed mod 2^64), "differ=<hex>" (pages
; found to differ from the pattern: a full pass compares each page's sum with the pattern's and
; scans a page whose sum differs; a sampled pass compares each sample), then "  at=<hex>" and
; "  read=<hex>" for the first differing quadword of each such page.  "end of probes" closes them.  The exit code is the number of
; differing pages over all passes (0 on a bare machine); the signature's r1 = that number,
; r2/r3 = the first differing address and what was read there, r4 = the pages probed.
.include "lib/prelude.s"

.equ TOP_VA, -0x100000                 ; 0xffff_ffff_fff0_0000: the top 1 MiB
.equ TOP_PAGES, 256
.equ TOP_FRAMES, 0x100000
.equ EXTRA_FRAMES, 0x200000
.equ TABLES, 0x60000                   ; map_page's next free table page
.equ RECORDS, 0x80000
.equ PATTERN1, 0x9e3779b97f4a7000
.equ PATTERN2, 0xc2b2ae3d27d4e000
.equ PAGE_OFFSETS_SUM, 8 * (511 * 512 / 2)   ; the offsets 0, 8, ..., 4088 summed
.equ PTE_P, 1                          ; §7.2
.equ PTE_W, 2
.equ PTE_U, 4
.equ PTE_PWU, PTE_P | PTE_W | PTE_U
.equ PTE_PS, 1 << 7
.equ MODE_FRAME, 1                     ; probe's r9: through the frames' identity map, else through a
.equ MODE_PATTERN2, 2                  ; pattern 2, else pattern 1
.equ MODE_WRITE, 4                     ; store the pattern, else read and check it
.equ MODE_SAMPLE, 8                    ; the eight samples of each page, else every quadword

main:
        li      r1, PD                 ; identity: PML4[0] -> PDPT, PDPT[0] -> PD, two 2 MiB pages
        li      r2, PTE_PS | PTE_PWU
        sd      r2, [r1]
        li      r2, 0x200000 | PTE_PS | PTE_PWU
        sd      r2, [r1 + 8]
        li      r1, PDPT
        li      r2, PD | PTE_PWU
        sd      r2, [r1]
        li      r1, PML4
        li      r2, PDPT | PTE_PWU
        sd      r2, [r1]
        la      r13, next_table
        li      r14, TABLES
        sd      r14, [r13]
        la      r9, ranges             ; every probed page -> its frame, user, writable
        li      r10, 0                 ; pages probed
m_range:
        ld      r11, [r9 + 8]
        beqz    r11, m_done
        add     r10, r10, r11
        ld      r1, [r9]
        ld      r12, [r9 + 16]
m_page:
        ori     r2, r12, PTE_PWU
        call    map_page
        li      r2, 4096
        add     r1, r1, r2
        add     r12, r12, r2
        addi    r11, r11, -1
        bnez    r11, m_page
        addi    r9, r9, 24
        jmp     m_range
m_done:
        la      r1, probed
        sd      r10, [r1]
        li      r9, MODE_FRAME | MODE_WRITE  ; fill pattern 1, paging still off: physical = frame
        call    probe
        li      r1, PML4
        mtcr    cr3, r1
        li      r1, CR0_PE | CR0_PG
        mtcr    cr0, r1
        li      r9, 0                  ; every quadword at CPL 0
        call    probe
        la      r10, s_cpl0
        call    report
        enter_ring 0, 1, m_back1
        li      r9, MODE_SAMPLE
        call    probe
        int     VEC_BACK
m_back1:
        la      r10, s_cpl1
        call    report
        enter_ring 0, 2, m_back2
        li      r9, MODE_SAMPLE
        call    probe
        int     VEC_BACK
m_back2:
        la      r10, s_cpl2
        call    report
        enter_ring 0, 3, m_back3
        li      r9, MODE_SAMPLE
        call    probe
        int     VEC_BACK
m_back3:
        la      r10, s_cpl3
        call    report
        li      r9, MODE_SAMPLE | MODE_PATTERN2 | MODE_WRITE
        call    probe
        li      r9, MODE_SAMPLE | MODE_PATTERN2
        call    probe
        la      r10, s_back
        call    report
        li      r9, MODE_SAMPLE | MODE_PATTERN2 | MODE_FRAME
        call    probe
        la      r10, s_frames
        call    report
        la      r10, s_end
        call    print_str
        la      r10, total
        ld      r1, [r10]
        la      r10, exit_code
        sd      r1, [r10]
        la      r10, first
        ld      r2, [r10]
        ld      r3, [r10 + 8]
        la      r10, probed
        ld      r4, [r10]
        li      r5, 0
        li      r6, 0
        li      r7, 0
        li      r8, 0
        jmp     finish

; map_page: map the 4 KiB page at linear r1 with leaf entry r2 (§7.1: four levels from CR3's
; PML4, 9 index bits each above the page offset); a missing table is taken from next_table
; (RAM is zero at reset: a fresh table maps nothing).  Clobbers r3-r8.
map_page:
        li      r3, PML4
        li      r4, 39                 ; the shift of the level-4 index
mp_level:
        shr     r5, r1, r4
        andi    r5, r5, 511
        shli    r5, r5, 3
        add     r5, r5, r3             ; the entry
        li      r6, 12
        beq     r4, r6, mp_leaf
        ld      r6, [r5]
        bnez    r6, mp_next
        la      r7, next_table
        ld      r6, [r7]
        li      r8, 4096
        add     r8, r8, r6
        sd      r8, [r7]
        ori     r6, r6, PTE_PWU
        sd      r6, [r5]
mp_next:
        shri    r3, r6, 12             ; the next table: the entry's frame (no high bits are set)
        shli    r3, r3, 12
        addi    r4, r4, -9
        jmp     mp_level
mp_leaf:
        sd      r2, [r5]
        ret

; sample off: a sampled read of the quadword at offset `off` of the page at r5 (pattern r6 ^ off),
; summed into r11; the first that differs ends the page's samples (pr_sample_differs).
.macro sample off
        ld      r7, [r5 + \off]
        add     r11, r11, r7
        xori    r8, r6, \off
        li      r10, \off
        bne     r7, r8, pr_sample_differs
.endm

; store_sample off: a sampled write of the pattern r6 ^ off at offset `off` of the page at r5.
.macro store_sample off
        xori    r8, r6, \off
        sd      r8, [r5 + \off]
.endm

; probe: one pass over every probed page, in the mode r9 (MODE_*).  A full read sums each
; page's 512 quadwords (pass_sum: all of them), compares the sum with the pattern's, and for a
; page that differs scans for the first differing quadword and records it (RECORDS, nrec); a
; sampled one (MODE_SAMPLE) reads the last quadword of each eighth of the page (offsets 0x1f8 +
; 0x200 k) and records the first that differs.  Writes store the pattern at every quadword, or
; at the samples.  Only loads, stores and ALU: it runs alike at CPL 0-3.  Clobbers r1-r12.
probe:
        la      r1, pass_sum
        sd      r0, [r1]
        la      r1, nrec
        sd      r0, [r1]
        la      r1, ranges
pr_range:
        ld      r3, [r1 + 8]           ; pages left in this range
        beqz    r3, pr_done
        ld      r2, [r1]               ; the page's probed linear address
        ld      r4, [r1 + 16]          ; its frame
pr_page:
        mov     r5, r2                 ; r5: where this pass accesses the page
        andi    r8, r9, MODE_FRAME
        beqz    r8, pr_pattern
        mov     r5, r4
pr_pattern:
        li      r6, PATTERN1
        andi    r8, r9, MODE_PATTERN2
        beqz    r8, pr_expect
        li      r6, PATTERN2
pr_expect:
        xor     r6, r6, r2             ; r6: the page's first quadword, page ^ pattern
        andi    r8, r9, MODE_WRITE
        bnez    r8, pr_write
        andi    r8, r9, MODE_SAMPLE
        bnez    r8, pr_sampled
        li      r7, 0                  ; r7: the page's sum
        mov     r10, r5
        li      r11, 16                ; 16 blocks of 32 quadwords
pr_sum:
        ld      r8, [r10]
        add     r7, r7, r8
        ld      r8, [r10 + 8]
        add     r7, r7, r8
        ld      r8, [r10 + 16]
        add     r7, r7, r8
        ld      r8, [r10 + 24]
        add     r7, r7, r8
        ld      r8, [r10 + 32]
        add     r7, r7, r8
        ld      r8, [r10 + 40]
        add     r7, r7, r8
        ld      r8, [r10 + 48]
        add     r7, r7, r8
        ld      r8, [r10 + 56]
        add     r7, r7, r8
        ld      r8, [r10 + 64]
        add     r7, r7, r8
        ld      r8, [r10 + 72]
        add     r7, r7, r8
        ld      r8, [r10 + 80]
        add     r7, r7, r8
        ld      r8, [r10 + 88]
        add     r7, r7, r8
        ld      r8, [r10 + 96]
        add     r7, r7, r8
        ld      r8, [r10 + 104]
        add     r7, r7, r8
        ld      r8, [r10 + 112]
        add     r7, r7, r8
        ld      r8, [r10 + 120]
        add     r7, r7, r8
        ld      r8, [r10 + 128]
        add     r7, r7, r8
        ld      r8, [r10 + 136]
        add     r7, r7, r8
        ld      r8, [r10 + 144]
        add     r7, r7, r8
        ld      r8, [r10 + 152]
        add     r7, r7, r8
        ld      r8, [r10 + 160]
        add     r7, r7, r8
        ld      r8, [r10 + 168]
        add     r7, r7, r8
        ld      r8, [r10 + 176]
        add     r7, r7, r8
        ld      r8, [r10 + 184]
        add     r7, r7, r8
        ld      r8, [r10 + 192]
        add     r7, r7, r8
        ld      r8, [r10 + 200]
        add     r7, r7, r8
        ld      r8, [r10 + 208]
        add     r7, r7, r8
        ld      r8, [r10 + 216]
        add     r7, r7, r8
        ld      r8, [r10 + 224]
        add     r7, r7, r8
        ld      r8, [r10 + 232]
        add     r7, r7, r8
        ld      r8, [r10 + 240]
        add     r7, r7, r8
        ld      r8, [r10 + 248]
        add     r7, r7, r8
        addi    r10, r10, 256
        addi    r11, r11, -1
        bnez    r11, pr_sum
        la      r10, pass_sum
        ld      r11, [r10]
        add     r11, r11, r7
        sd      r11, [r10]
        shli    r8, r6, 9              ; the pattern's sum: 512 * r6 + the offsets
        li      r10, PAGE_OFFSETS_SUM
        add     r8, r8, r10
        beq     r7, r8, pr_next
        mov     r10, r5                ; the page differs: find its first differing quadword
        mov     r11, r6
        li      r12, 512
pr_scan:
        ld      r8, [r10]
        bne     r8, r11, pr_record
        addi    r10, r10, 8
        addi    r11, r11, 8
        addi    r12, r12, -1
        bnez    r12, pr_scan
        mov     r10, r5                ; the sum differed, yet every quadword read again matched:
        ld      r8, [r10]              ; record the page's first quadword as read now
pr_record:
        la      r11, nrec
        ld      r12, [r11]
        addi    r7, r12, 1
        sd      r7, [r11]
        shli    r12, r12, 4
        li      r11, RECORDS
        add     r11, r11, r12
        sd      r10, [r11]
        sd      r8, [r11 + 8]
        jmp     pr_next
pr_sampled:
        li      r11, 0                 ; r11: the samples' sum
        sample  0x1f8
        sample  0x3f8
        sample  0x5f8
        sample  0x7f8
        sample  0x9f8
        sample  0xbf8
        sample  0xdf8
        sample  0xff8
        la      r10, pass_sum
        ld      r8, [r10]
        add     r8, r8, r11
        sd      r8, [r10]
        jmp     pr_next
pr_sample_differs:                     ; r10 = the sample's offset, r7 = what was read there
        add     r10, r10, r5
        mov     r8, r7
        jmp     pr_record
pr_write:
        andi    r8, r9, MODE_SAMPLE
        beqz    r8, pr_write_all
        store_sample 0x1f8
        store_sample 0x3f8
        store_sample 0x5f8
        store_sample 0x7f8
        store_sample 0x9f8
        store_sample 0xbf8
        store_sample 0xdf8
        store_sample 0xff8
        jmp     pr_next
pr_write_all:
        mov     r10, r5                ; 16 blocks of 32 quadwords: page ^ pattern + offset
        mov     r11, r6
        li      r12, 16
pr_store:
        sd      r11, [r10]
        xori    r8, r11, 8
        sd      r8, [r10 + 8]
        xori    r8, r11, 16
        sd      r8, [r10 + 16]
        xori    r8, r11, 24
        sd      r8, [r10 + 24]
        xori    r8, r11, 32
        sd      r8, [r10 + 32]
        xori    r8, r11, 40
        sd      r8, [r10 + 40]
        xori    r8, r11, 48
        sd      r8, [r10 + 48]
        xori    r8, r11, 56
        sd      r8, [r10 + 56]
        xori    r8, r11, 64
        sd      r8, [r10 + 64]
        xori    r8, r11, 72
        sd      r8, [r10 + 72]
        xori    r8, r11, 80
        sd      r8, [r10 + 80]
        xori    r8, r11, 88
        sd      r8, [r10 + 88]
        xori    r8, r11, 96
        sd      r8, [r10 + 96]
        xori    r8, r11, 104
        sd      r8, [r10 + 104]
        xori    r8, r11, 112
        sd      r8, [r10 + 112]
        xori    r8, r11, 120
        sd      r8, [r10 + 120]
        xori    r8, r11, 128
        sd      r8, [r10 + 128]
        xori    r8, r11, 136
        sd      r8, [r10 + 136]
        xori    r8, r11, 144
        sd      r8, [r10 + 144]
        xori    r8, r11, 152
        sd      r8, [r10 + 152]
        xori    r8, r11, 160
        sd      r8, [r10 + 160]
        xori    r8, r11, 168
        sd      r8, [r10 + 168]
        xori    r8, r11, 176
        sd      r8, [r10 + 176]
        xori    r8, r11, 184
        sd      r8, [r10 + 184]
        xori    r8, r11, 192
        sd      r8, [r10 + 192]
        xori    r8, r11, 200
        sd      r8, [r10 + 200]
        xori    r8, r11, 208
        sd      r8, [r10 + 208]
        xori    r8, r11, 216
        sd      r8, [r10 + 216]
        xori    r8, r11, 224
        sd      r8, [r10 + 224]
        xori    r8, r11, 232
        sd      r8, [r10 + 232]
        xori    r8, r11, 240
        sd      r8, [r10 + 240]
        xori    r8, r11, 248
        sd      r8, [r10 + 248]
        addi    r10, r10, 256
        addi    r11, r11, 256          ; a block starts at a multiple of 256: xor is add below it
        addi    r12, r12, -1
        bnez    r12, pr_store
pr_next:
        li      r8, 4096
        add     r2, r2, r8
        add     r4, r4, r8
        addi    r3, r3, -1
        bnez    r3, pr_page
        addi    r1, r1, 24
        jmp     pr_range
pr_done:
        ret

; report: at CPL 0, print the pass named by the string at r10 (sum, pages that differ, and the
; first differing quadword of each), count them in `total` and keep the first in `first`.
report:
        call    print_str
        la      r10, s_sum
        call    print_str
        la      r10, pass_sum
        ld      r10, [r10]
        call    print_hex_nl
        la      r10, s_differ
        call    print_str
        la      r1, nrec
        ld      r1, [r1]
        mov     r10, r1
        call    print_hex_nl
        la      r2, total
        ld      r3, [r2]
        add     r4, r3, r1
        sd      r4, [r2]
        beqz    r1, rp_done
        bnez    r3, rp_list            ; an earlier pass found the first already
        li      r4, RECORDS
        la      r2, first
        ld      r5, [r4]
        sd      r5, [r2]
        ld      r5, [r4 + 8]
        sd      r5, [r2 + 8]
rp_list:
        li      r2, RECORDS
rp_next:
        la      r10, s_at
        call    print_str
        ld      r10, [r2]
        call    print_hex_nl
        la      r10, s_read
        call    print_str
        ld      r10, [r2 + 8]
        call    print_hex_nl
        addi    r2, r2, 16
        addi    r1, r1, -1
        bnez    r1, rp_next
rp_done:
        ret

s_cpl0:   .asciz "cpl0"
s_cpl1:   .asciz "cpl1"
s_cpl2:   .asciz "cpl2"
s_cpl3:   .asciz "cpl3"
s_back:   .asciz "cpl0 back"
s_frames: .asciz "frames"
s_sum:    .asciz ": sum="
s_differ: .asciz "differ="
s_at:     .asciz "  at="
s_read:   .asciz "  read="
s_end:    .asciz "end of probes\n"

.align 8
; The probed ranges: (first page's linear address, pages, first frame), ended by 0 pages.
ranges:
        .quad TOP_VA, TOP_PAGES, TOP_FRAMES
extra_range:                           ; patched by the test: (address, pages) of a declared range elsewhere
        .quad 0, 0, EXTRA_FRAMES
        .quad 0, 0, 0
next_table: .quad 0
probed:     .quad 0
pass_sum:   .quad 0
nrec:       .quad 0
total:      .quad 0
first:      .quad 0, 0
.include "lib/signature.s"
