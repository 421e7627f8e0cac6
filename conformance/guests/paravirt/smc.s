; The paravirtual port of conformance/guests/smc.s: self-modifying code — a routine runs, is overwritten by a store, and runs again.
;
; Nothing here is sensitive: the code is the native guest's, in the kernel (docs/paravirt-abi.md
; §3: the bootstrap mapping is writable and executable, so the store reaches the code page);
; only the start and the signature are the paravirtual library's.  r1 = the first result,
; r2 = the second.
.include "lib/directed.s"
.include "../lib/body_smc.s"
.include "lib/end.s"
