; Mechanism: self-modifying code — a routine runs, is overwritten by a store, and runs again;
; the new instruction must execute (decoded-instruction caches and translations must follow
; stores to code, docs/architecture.md §15).  r1 = the first result, r2 = the second.
.include "lib/prelude.s"
.include "lib/body_smc.s"
.include "lib/signature.s"
