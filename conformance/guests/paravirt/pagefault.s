; The paravirtual port of conformance/guests/pagefault.s: page faults in the kernel and in user mode, repaired and retried.
;
; A not-present write in the kernel and a user write to a read-only page, each repaired by the
; kernel's #PF handler — which reads the faulting address from SHARED_CR2 (docs/paravirt-abi.md
; §6.2; CR2 is the VMM's to read) and changes the entry by mmu_update (§7.3) and invlpg (§4.7)
; where the native one stores into the table and executes invlpg.  r1/r2 = the values read
; back, r3/r4 = the faults' CR2; the log holds vector 14 with the error codes (PF_W = 2 in the
; kernel, PF_P | PF_W | PF_U = 7 from user mode: §6.2 gives PF_U exactly for the virtual CPL 3).
.include "lib/directed.s"
.include "../lib/body_pagefault.s"
.include "lib/end.s"
