"""A guest on a vtx machine for the vmx tests (docs/vmx.md): 4 MiB of host RAM whose upper
2 MiB hold the guest's memory, reached through identity-offset nested tables (GUEST_BASE) when
ept is on, or addressed directly (guest-physical = host-physical) without it.  The guest's
layout mirrors core_rig's: code at CODE, an IDT at IDT whose gates point at HANDLER (a
`vmcall 0xEE` stub), stacks, data.  Exits are looked at through the VMCS, as a VMM would."""

from __future__ import annotations

from cffi_core.asm import assemble
from cffi_core.isa.encoding import encode
from cffi_core.machine import Exit, Machine
from cffi_core.pagetables import EPT_W, EPT_X, PTE_U, PTE_W, PageAllocator, PageTables, ept_pointer
from cffi_core.vmx import ProcControl, VmcsField

HOST_MEMORY = 4 << 20
GUEST_MEMORY = 2 << 20
GUEST_BASE = 2 << 20  # host-physical address of guest-physical 0 with ept
NESTED_TABLES = (0x100000, 0x200000)  # host-only pages for nested tables
CODE = 0x1000
IDT = 0x8000
HANDLER = 0x10000  # every gate's handler: `vmcall 0xEE` (so delivery is visible as a VM exit)
HANDLER_VMCALL = 0xEE
STACK = 0x20000
RSP = (0x21000, 0x22000, 0x23000)
DATA = 0x40000
GUEST_TABLES = 0x80000  # guest page tables (guest-physical)
IF = 1 << 9
CR0_PE, CR0_WP, CR0_PG = 1, 1 << 4, 1 << 15
GATE_INT, GATE_TRAP, GATE_HOST, GATE_RSVD = 0, 1, 2, 3
U64 = (1 << 64) - 1

I = encode  # noqa: E741 - reads like the assembler: I("add", rd=1, rs1=2, rs2=3)


class Guest:
    """One machine, one VMCS, one guest."""

    def __init__(self, profile: str = "vtx-2009+iommu", *, ept: bool = True, ept_levels: int = 4,
                 vpid: int = 0, proc: int = 0, memory: int = HOST_MEMORY, **machine_kw: object) -> None:  # fmt: skip
        self.m = Machine(profile, memory=memory, **machine_kw)
        self.ept = ept
        self.base = GUEST_BASE if ept else 0
        self.v = self.m.vmcs()
        controls = proc
        if ept:
            self.nested = PageTables(self.m.write_u64, PageAllocator(*NESTED_TABLES), levels=ept_levels)
            self.nested.map(0, GUEST_BASE, GUEST_MEMORY, flags=EPT_W | EPT_X)
            self.v[VmcsField.EPT_POINTER] = ept_pointer(self.nested.root, ept_levels)
            controls |= ProcControl.ENABLE_EPT
        if vpid:
            self.v[VmcsField.VPID] = vpid
            controls |= ProcControl.ENABLE_VPID
        self.v[VmcsField.PROC_CONTROLS] = controls
        self.set(GUEST_PC=CODE, GUEST_IDTR=IDT, GUEST_RSP0=RSP[0], GUEST_RSP1=RSP[1], GUEST_RSP2=RSP[2])
        self.v.regs[15] = STACK
        self.write(HANDLER, I("vmcall", imm=HANDLER_VMCALL).to_bytes(4, "little"))
        for vector in range(256):
            self.gate(vector)

    # -- the guest's memory (guest-physical addresses) ---------------------------------------
    def write(self, gpa: int, data: bytes) -> None:
        self.m.write(self.base + gpa, data)

    def read(self, gpa: int, n: int) -> bytes:
        return self.m.read(self.base + gpa, n)

    def w64(self, gpa: int, value: int) -> None:
        self.write(gpa, (value & U64).to_bytes(8, "little"))

    def r64(self, gpa: int) -> int:
        return int.from_bytes(self.read(gpa, 8), "little")

    def code(self, *words: int, at: int = CODE) -> None:
        self.write(at, b"".join(w.to_bytes(4, "little") for w in words))

    def asm(self, text: str, at: int = CODE) -> None:
        for seg in assemble(text, origin=at).segments:
            self.write(seg.address, seg.data)

    def gate(self, vector: int, handler: int = HANDLER, gate_type: int = GATE_INT, *, dpl: int = 3,
             ring: int = 0, present: bool = True) -> None:  # fmt: skip
        self.w64(IDT + 16 * vector, handler)
        self.w64(IDT + 16 * vector + 8, int(present) | gate_type << 1 | dpl << 4 | ring << 6)

    def paging(self, levels: int = 4, flags: int = PTE_W | PTE_U) -> PageTables:
        """Guest page tables identity-mapping [0, GUEST_TABLES), written in guest memory; turns
        guest paging on."""
        tables = PageTables(self.w64, PageAllocator(GUEST_TABLES, GUEST_MEMORY), levels=levels)
        tables.map(0, 0, GUEST_TABLES, flags=flags)
        self.set(GUEST_CR3=tables.root, GUEST_CR4=levels - 2, GUEST_CR0=CR0_PE | CR0_PG)
        return tables

    # -- the VMCS -----------------------------------------------------------------------------
    def set(self, **fields: int) -> None:
        for name, value in fields.items():
            self.v[VmcsField[name]] = value

    def get(self, name: str) -> int:
        return self.v[VmcsField[name]]

    def controls(self, *names: str) -> None:
        """Add PROC_CONTROLS bits by name."""
        value = self.get("PROC_CONTROLS")
        for n in names:
            value |= ProcControl[n]
        self.set(PROC_CONTROLS=value)

    def run(self, budget: int = 1000) -> Exit:
        self.exit = self.m.vmrun(self.v, budget)
        return self.exit

    @property
    def pc(self) -> int:
        return self.get("GUEST_PC")

    def counters(self) -> dict[str, int]:
        return dict(self.m.counters)
