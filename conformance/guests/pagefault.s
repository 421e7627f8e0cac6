; Mechanism: page faults handled by the guest kernel (docs/architecture.md §7.5): a
; not-present write at CPL 0 and a user write to a read-only page, each repaired and retried.
; r1 = the value read back in the first page, r2 = in the second, r3/r4 = CR2 of the faults;
; the log holds vector 14 with the error codes (PF_W = 2; PF_P | PF_W | PF_U = 7).
.include "lib/prelude.s"
.include "lib/paging.s"
.include "lib/body_pagefault.s"
.include "lib/signature.s"
