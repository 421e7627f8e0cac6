; The paravirtual port of conformance/guests/transfers.s: callr, jr and ret in the kernel to targets 16 KiB apart.
;
; Indirect transfers are innocuous: the native guest's code unchanged (a translation-cache
; lookup that indexes by pc bits 13:2 alone must still tell the regions apart under any VMM),
; with the paravirtual library's start and signature.  r1-r3 = each region's mix, r4 = rounds
; left, r5-r7 = each region's visits.
.include "lib/directed.s"
.include "../lib/body_transfers.s"
.include "lib/end.s"
