; Mechanism: indirect control transfers at CPL 0 to code 16 KiB apart — `callr` to functions,
; `jr` to labels and `ret` to return sites at the same offsets of three regions (0x4000,
; 0x8000, 0xc000), taken in alternation.  Their addresses share bits 13:2, so a lookup that
; indexes by those bits alone (the direct-mapped TC hash of a binary translator, Adams &
; Agesen 2006 §3.1) must still compare the whole guest pc: a transfer to the wrong region shows
; in the mix.  Each region mixes its own constant into r1 (callr), r2 (jr) or r3 (ret) in an
; order-dependent way; r4 counts the rounds left, r5-r7 count each region's visits.
.include "lib/prelude.s"
.include "lib/body_transfers.s"
.include "lib/signature.s"
