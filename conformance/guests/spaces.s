; Mechanism: two live address spaces (docs/architecture.md §7, §8.1).  lib/paging.s builds A
; and B, which map PAGED_VA to different frames (marks 0x70 and 0x77 at offset 8).  Ring 3
; reads PAGED_VA in A, asks the kernel (int 0x42) to load CR3 with B, reads and writes the same
; address there, goes back to A, then the kernel remaps the page ring 3 has used (PTE changed,
; invlpg) to frame 3, read-only, and ring 3 reads it again and tries to write it (#PF, logged).
; r1-r5 = what ring 3 read: 0x70, 0x77, 0x70, 0 (A's frame was not written), 0x73;
; r6/r7 = PT_B[0] and PT[0] read back (A/D bits, §7.5), r8 = the quadword written through B.
.include "lib/prelude.s"
.include "lib/paging.s"
.include "lib/body_spaces.s"
.include "lib/signature.s"
