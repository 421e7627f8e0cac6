; The victim's own work, shared by conformance/guests/victim.s and its paravirtual port: a word in every free page, a pattern, and the checksums of both and of the sector read.
;
; The includer defines skip_own (the pages it uses besides the image and the page tables)
; and does its devices' part itself — the timer, the disk read, the wait — between these macros.
.equ PATTERN, DATA                     ; 4 KiB written and summed
.equ SECTOR, DATA + 0x1000             ; the disk reads sector 1 here
.equ PAGE_WORD, 0x800                  ; the word of each page: below any stack's reach

; skip_used next: go to `next` when the page at r6 is one of those the guest uses otherwise:
; the image, the page tables, and the pages the includer's skip_own names.
.macro skip_used next
        li      r10, 0x1000
        bltu    r6, r10, c1\@
        la      r11, victim_end
        bltu    r6, r11, \next         ; the image
c1\@:   li      r10, PML4
        bltu    r6, r10, c2\@
        li      r10, PT + 0x1000
        bltu    r6, r10, \next         ; the page tables
c2\@:   skip_own \next
.endm

; mark_pages: PAGE_WORD of every page below RAM_END but those skip_used names = the page's
; address xor a constant.
.macro mark_pages
        li      r6, 0                  ; one word in every other page: page address xor a constant
        li      r7, RAM_END
        li      r8, 0x6a09e667f3bcc909
wpage:  skip_used wnext
        xor     r5, r6, r8
        sd      r5, [r6 + PAGE_WORD]
wnext:  addi    r6, r6, 4096
        bltu    r6, r7, wpage
.endm

; fill_pattern: PATTERN's 512 words, word i = i * 0x9e3779b97f4a7c15; leaves r7 = its end.
.macro fill_pattern
        li      r6, PATTERN            ; write the pattern: word i = i * 0x9e3779b97f4a7c15
        li      r7, PATTERN + 4096
        li      r8, 0x9e3779b97f4a7c15
        li      r5, 0
fill:   sd      r5, [r6]
        add     r5, r5, r8
        addi    r6, r6, 8
        bltu    r6, r7, fill
.endm

; sum_pattern (after fill_pattern, r7 kept): r2 = a rotate-and-xor checksum of PATTERN.
.macro sum_pattern
        li      r2, 0                  ; sum the pattern back while the timer ticks
        li      r6, PATTERN
sum:    ld      r5, [r6]
        xor     r2, r2, r5
        shli    r5, r2, 13
        shri    r2, r2, 51
        or      r2, r2, r5
        addi    r6, r6, 8
        bltu    r6, r7, sum
.endm

; finish_sums: r3 = the checksum of SECTOR, r5 = that of every page's word, the scratch
; registers cleared, then the signature.
.macro finish_sums
        li      r3, 0                  ; checksum of the sector read
        li      r6, SECTOR
        li      r7, SECTOR + 512
sect:   ld      r5, [r6]
        add     r3, r3, r5
        shli    r5, r3, 7
        shri    r3, r3, 57
        or      r3, r3, r5
        addi    r6, r6, 8
        bltu    r6, r7, sect
        li      r5, 0                  ; checksum of the words of every other page
        li      r6, 0
        li      r7, RAM_END
rpage:  skip_used rnext
        ld      r8, [r6 + PAGE_WORD]
        add     r5, r5, r8
        shli    r8, r5, 11
        shri    r5, r5, 53
        or      r5, r5, r8
rnext:  addi    r6, r6, 4096
        bltu    r6, r7, rpage
        li      r6, 0
        li      r7, 0
        li      r8, 0
        li      r10, 0
        li      r11, 0
        jmp     finish
.endm
