; The kernel loads from the VMM's IDT page, mapped above PV_VIRT_LIMIT in the VMM's top-level slot (docs/paravirt-abi.md §7.2 rule 4).
;
; Beyond the segment limit on x86-2005: #GP(0), logged and skipped, r1 = 0; a supervisor page at
; CPL 3 on the ring-3 hosts: #PF.  (In guest mode a guest-ring-1 kernel may read it: rule 4.)
.include "lib/directed.s"
main:
        li      r3, 0xfffffffffffff000  ; the top page: the VMM's slot (the reference VMM's IDT)
        li      r1, 0
        ld      r1, [r3 + 8]
        li      r3, 0
        jmp     finish

.include "lib/end.s"
