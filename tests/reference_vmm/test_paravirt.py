"""The paravirtual VMM (reference_vmm.paravirt) on every host profile: the start state, hypercalls, validated page tables, events, traps, the fast system call, rings, and what each transport's host does."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from cffi_core.asm import assemble, assemble_file
from cffi_core.machine import Machine
from cffi_core.spec.state import FLAGS_IF, PF, PTE_P, PTE_U, PTE_W
from conformance import paravirt as pv
from conformance.api import VMConfig, default_host_memory, run_alone
from reference_vmm.paravirt import IDT_VA, KERNEL_RING, ParavirtVM, ParavirtVMM

GUESTS = Path(__file__).resolve().parents[1] / "guests" / "paravirt"
MEMORY = 4 << 20
CONFIG = VMConfig(memory=MEMORY, budget=400_000)
PROFILES = ["x86-2005", "x86-64-2005", "classic-1974", "vtx-2006", "vtx-2009"]
"""Every host profile: one per transport's host and then some (docs/paravirt-abi.md §1's table)."""
RING3 = {"x86-64-2005", "classic-1974"}
"""The profiles whose guest kernel runs at ring 3 (Transport.INT): PTE_U in every entry (§7.2)."""
T = pv.Transport
each_profile = pytest.mark.parametrize("profile", PROFILES)


def boot(name: str, config: VMConfig = CONFIG, profile: str = "x86-2005") -> tuple[ParavirtVMM, ParavirtVM]:
    """A VMM on a fresh host of ``profile`` with the directed guest ``name`` created, not yet run."""
    host = Machine(profile, default_host_memory(config.memory))
    vmm = ParavirtVMM(host)
    return vmm, vmm.create_vm(assemble_file(GUESTS / f"{name}.s"), config)


def run(name: str, config: VMConfig = CONFIG, profile: str = "x86-2005") -> ParavirtVM:
    """Boot ``name`` and run it to its stop in slices of 2,000 ticks (the suite's)."""
    vmm, vm = boot(name, config, profile)
    while vm.stop is None:
        vmm.run(2000)
    return vm


def words(data: bytes) -> list[int]:
    """Little-endian quadwords."""
    return list(struct.unpack(f"<{len(data) // 8}Q", data))


# ---- the start (docs/paravirt-abi.md §3) ------------------------------------------------------------


@each_profile
def test_hello_boots_writes_the_console_and_shuts_down(profile):
    vm = run("hello", profile=profile)
    assert (vm.console, vm.exit_code, vm.stop) == (b"hello, paravirt\n", 7, "exit")
    c = vm.counters
    assert c["hypercall_version"] == c["hypercall_console_write"] == c["hypercall_sched_op"] == 1
    assert c["hypercalls"] == 3 == c["vmm_interventions"]
    # Every instruction ran on the host; a vmcall exits before it retires (docs/vmx.md V.3), its tick spent.
    vmcalls = 3 if pv.transport_for(profile) is T.VMCALL else 0
    assert c["guest_insns_direct"] == c["guest_ticks"] - vmcalls
    assert c["guest_insns_emulated"] == 0


@each_profile
def test_the_start_state_is_the_specifications(profile):
    vmm, vm = boot("hello", profile=profile)
    area = pv.pv_area(MEMORY)
    base = vm.mem_base
    host = vmm.host

    def start(name: str) -> int:
        return host.read_u64(base + area.start_info + pv.START_INFO.offset(name))

    page = assemble_file(GUESTS / "hello.s").symbols["hypercall_page"]
    assert start("magic") == pv.START_MAGIC_VALUE and start("version") == pv.PV_ABI_VERSION
    assert (start("mem_base"), start("mem_size"), start("pv_start")) == (base, MEMORY, area.start)
    assert (start("shared_info"), start("console_ring"), start("block_ring")) == area[2:5]
    assert (start("block_sectors"), start("hypercall_page")) == (0, page)
    assert (start("pt_base"), start("pt_pages")) == (area.tables, area.table_pages)
    assert host.read(base + page, 4096) == pv.hypercall_page(pv.transport_for(profile))
    assert host.memory[base + area.shared_info] == 1  # the event mask: masked (§3)
    assert host.read(base + area.shared_info + 1, 0x27) == bytes(0x27)
    # Registers: r1 = start info, the rest 0; the kernel at ring 1 (3 where the host has neither
    # segment limits nor guest mode) on the bootstrap L4.
    assert vm.regs[1] == area.start_info and vm.regs[2:] == [0] * 14
    ring = 3 if profile in RING3 else KERNEL_RING
    assert (vm.pc, vm.ring, vm.base) == (0x1000, ring, base + area.tables)
    user = PTE_U if profile in RING3 else 0  # the kernel reaches its pages at CPL 3 (§7.2)
    # The bootstrap tables: pinned at their levels, mapped read-only; everything else writable.
    levels = [4, 3, 2] + [1] * (area.table_pages - 3)
    tables = [base + area.tables + i * 4096 for i in range(area.table_pages)]
    assert [vm.tables.level[t] for t in tables] == levels
    frame = area.tables // 4096  # the first table page, mapped read-only by the L1 of its 2 MiB
    l1_code, l1_tables = tables[3], tables[3 + frame // 512]
    assert words(host.read(l1_code, 4096))[1] == (base + 0x1000) | PTE_P | PTE_W | user
    assert words(host.read(l1_tables, 4096))[frame % 512] == (base + area.tables) | PTE_P | user
    assert not vm.tables.writable[base + area.tables]
    # The VMM's slot of the L4 maps its IDT, beyond the segment limit, supervisor on every host.
    assert host.read_u64(tables[0] + 8 * 511) & (PTE_P | PTE_U) == PTE_P
    assert IDT_VA >= pv.PV_VIRT_LIMIT


def test_an_image_without_a_hypercall_page_is_refused_by_name():
    image = assemble(".org 0x1000\n_start: ud\n")
    vmm = ParavirtVMM(Machine("x86-2005", default_host_memory(MEMORY)))
    with pytest.raises(ValueError, match="no symbol 'hypercall_page'"):
        vmm.create_vm(image, CONFIG)


def test_an_image_reaching_into_the_pv_area_is_refused():
    start = pv.pv_area(MEMORY).start
    image = assemble(f".org 0x1000\n_start: ud\n.align 4096\nhypercall_page: .space 4096\n.org {start:#x}\n.quad 1\n")
    vmm = ParavirtVMM(Machine("x86-2005", default_host_memory(MEMORY)))
    with pytest.raises(ValueError, match="reaches into the PV area"):
        vmm.create_vm(image, CONFIG)


@pytest.mark.parametrize("profile", ["x86-64-2005", "classic-1974", "vtx-2006", "vtx-2009"])
def test_every_profile_takes_the_vmm_with_its_transport(profile):
    assert ParavirtVMM.requires == frozenset()
    vmm = ParavirtVMM(Machine(profile, default_host_memory(MEMORY)))
    assert vmm.transport is pv.transport_for(profile)


# ---- validated page tables (docs/paravirt-abi.md §7) ------------------------------------------------

E = pv.PvError


def refusal(code: pv.PvError) -> int:
    return pv.result(code)


def outcome(r1: int, r2: int) -> tuple[pv.PvError | None, int]:
    """A hypercall's outcome as the tables below give it: (the code, r2) when refused, else (None, r1)."""
    code = pv.error_of(r1)
    return (code, r2) if code is not None else (None, r1)


@each_profile
def test_a_guest_builds_pins_and_switches_to_its_own_page_tables(profile):
    vm = run("pagetable", profile=profile)
    assert (vm.stop, vm.exit_code) == ("exit", 0)
    batch, batch_r2, set_cr3, vmm_slot, marker, unpin_new, unpin_new_r2, unpin_boot, unpin_boot_r2 = words(vm.console)
    assert (batch, batch_r2) == (0, 12)  # twelve requests applied; r2 keeps the count
    assert (set_cr3, vmm_slot, marker) == (0, 1, 0x5EED)  # the new space runs the guest's code and data
    assert (unpin_new, unpin_new_r2) == (refusal(E.EINUSE), 0)  # the current base
    assert (unpin_boot, unpin_boot_r2) == (0, 1)
    base, area = vm.mem_base, pv.pv_area(MEMORY)
    levels = {base + 0x100000: 1, base + 0x101000: 2, base + 0x102000: 3, base + 0x103000: 4}
    assert {page: vm.tables.level.get(page) for page in levels} == levels
    assert vm.base == base + 0x103000
    boot_l4 = base + area.tables
    assert boot_l4 not in vm.tables.level
    assert vm.monitor.host.read_u64(boot_l4 + 8 * 511) == 0  # the VMM took its slot back at the unpin
    assert vm.counters["mmu_update_requests"] == 14


MMU_ATTACKS = [
    ("writable mapping of the bootstrap L4", E.EWRITABLE, 0),
    ("frame just past the guest's memory", E.ENOTOWNED, 0),
    ("the machine's last frame", E.ENOTOWNED, 0),
    ("a reserved bit", E.ERSVD, 0),
    ("a large page", E.ERSVD, 0),
    ("the VMM's L4 slot 256", E.EPERM, 0),
    ("the VMM's L4 slot 511", E.EPERM, 0),
    ("an entry of an ordinary page", E.ENOTTABLE, 0),
    ("an L2 entry naming an ordinary page", E.ENOTTABLE, 0),
    ("an L2 entry naming an L2", E.ELEVEL, 0),
    ("a batch refused at its second request", E.EWRITABLE, 1),
    ("2,049 requests", E.E2BIG, pv.MMU_UPDATE_MAX + 1),
    ("requests the kernel cannot read", E.EFAULT, 0),
    ("pin the shared info page", E.EPERM, 0),
    ("pin a pinned L1", E.EPINNED, 0),
    ("pin an unaligned page", E.EINVAL, 0),
    ("pin at level 5", E.EINVAL, 0),
    ("pin a page mapped writable", E.EWRITABLE, 0),
    ("pin a page past the guest's memory", E.ENOTOWNED, 0),
    ("unpin the current base", E.EINUSE, 0),
    ("unpin an L1 an L2 names", E.EINUSE, 0),
    ("unpin an ordinary page", E.ENOTTABLE, 0),
    ("command 5", E.EINVAL, 0),
    ("invlpg with a value", E.EINVAL, 0),
    ("pin an L1 that maps itself writable", E.EWRITABLE, 1),
]
SET_CR3_ATTACKS = [
    ("unaligned", E.EINVAL),
    ("an L1", E.ELEVEL),
    ("an ordinary page", E.ENOTTABLE),
    ("user base an L3", E.ELEVEL),
]


@each_profile
def test_malicious_page_table_updates_are_refused_with_their_codes(profile):
    vmm, vm = boot("mmu_attack", profile=profile)
    host = vmm.host
    frozen = {page: words(host.read(page, 4096)) for page in vm.tables.level}
    while vm.stop is None:
        vmm.run(2000)
    assert (vm.stop, vm.exit_code) == ("exit", 0)
    out = words(vm.console)
    n = 2 * len(MMU_ATTACKS)
    got = [
        (name, pv.error_of(r1), r2) for (name, _, _), r1, r2 in zip(MMU_ATTACKS, out[0:n:2], out[1:n:2], strict=True)
    ]
    assert got == [(name, code, index) for name, code, index in MMU_ATTACKS]
    cr3 = out[n : n + len(SET_CR3_ATTACKS)]
    assert [(name, pv.error_of(r1)) for (name, _), r1 in zip(SET_CR3_ATTACKS, cr3, strict=True)] == SET_CR3_ATTACKS
    victim, neighbour, slot_256, slot_511, l2_slot_5 = out[n + len(SET_CR3_ATTACKS) :]
    base = vm.mem_base
    ad = 0x60 | PTE_U  # the walker's A and D; PTE_U, which the VMM adds on ring-3 hosts (§7.2)
    assert victim & ~ad == (base + 0x51000) | PTE_P  # the valid first request of the refused batch stayed
    assert neighbour & ~ad == (base + 0x52000) | PTE_P | PTE_W  # the one after it was not read
    assert (slot_256, l2_slot_5) == (0, 0) and slot_511 & PTE_P
    # Nothing else changed: every pinned table as it was (but for the walker's A and D bits and the
    # two valid requests: the victim's remap, the would-be self-mapping L1 made read-only), the
    # same pages pinned, no writable mapping of any of them.
    first_l1 = base + pv.pv_area(MEMORY).tables + 3 * 4096
    for page, before in frozen.items():
        after = words(host.read(page, 4096))
        changed = [i for i in range(512) if (before[i] ^ after[i]) & ~ad]
        assert changed == ([0x50, 0x55] if page == first_l1 else []), hex(page)
    assert set(vm.tables.level) == set(frozen)
    assert not any(vm.tables.writable[page] for page in frozen)
    c = vm.counters
    assert sum(v for k, v in c.items() if k.startswith("refused_")) == len(MMU_ATTACKS) + len(SET_CR3_ATTACKS)


# ---- the guest kernel's traps (docs/paravirt-abi.md §6, §8) and the other refusals (§4) ---------------

PRIVILEGED = ["cli", "sti", "hlt", "mtcr", "rdmsr", "out", "invlpg"]
TRAP_TABLE_REFUSALS = [
    ("vector 0x82", E.EPERM, 0x82),
    ("ring 1", E.EINVAL, 40),
    ("attribute bit 9", E.EINVAL, 40),
    ("a host gate", E.EINVAL, 40),
    ("a handler at PV_VIRT_LIMIT", E.EPERM, 41),
    ("fast at the upcall vector", E.EINVAL, pv.PV_UPCALL_VECTOR),
    ("a second fast gate", E.EINVAL, 0x81),
    ("a fast interrupt gate", E.EINVAL, 0x81),
    ("an unmapped table", E.EFAULT, 0),
]
OTHER_REFUSALS = [
    ("hypercall 12", E.ENOSYS, 0),
    ("console_write of 4097 bytes", E.E2BIG, pv.PV_CONSOLE_WRITE_MAX + 1),
    ("console_write unmapped", E.EFAULT, 1),
    ("console_write across the limit", E.EFAULT, 8),
    ("console_write of the VMM's IDT page", E.EFAULT, 8),
    ("console_write of 3 bytes", None, 3),
    ("evtchn_send timer", E.EBADPORT, 0),
    ("evtchn_send port 3", E.EBADPORT, 0),
    ("evtchn_send block without a disk", E.ENODEV, 0),
    ("evtchn_unmask port 8", E.EBADPORT, 0),
    ("sched_op 3", E.EINVAL, 0),
    ("stack_switch", None, 0),
    ("invlpg beyond the limit", None, 0),
]


@each_profile
def test_privileged_instructions_and_faults_reach_the_trap_table_with_the_abis_frame(profile):
    vm = run("traps", profile=profile)
    assert (vm.stop, vm.exit_code) == ("exit", 0)
    assert vm.console.startswith(b"ok\n")
    out = words(vm.console[3:])
    assert out[0] == 0  # set_trap_table
    frames = [out[1 + 7 * i : 8 + 7 * i] for i in range(len(PRIVILEGED) + 2)]
    stack = 0x80000
    pt_base = pv.pv_area(MEMORY).tables
    # vector, error, cs (the virtual CPL: the kernel), FLAGS (the event mask was 1: 0), the old sp,
    # the frame's address (the same stack, 16-aligned, five quadwords down) and SHARED_CR2.
    gp = [13, 0, 0, 0, stack, stack - 40]
    assert [f[:6] for f in frames[: len(PRIVILEGED)]] == [gp] * len(PRIVILEGED)
    assert frames[len(PRIVILEGED)] == [14, 3, 0, 0, stack, stack - 40, pt_base + 8]  # #PF(P|W): a pinned table
    assert frames[len(PRIVILEGED) + 1] == [*gp, pt_base + 8]  # beyond the segment limit, or not canonical: #GP(0)
    rest = out[1 + 7 * len(frames) :]
    assert rest[:2] == [6, refusal(E.EINVAL)]  # the refused iret: #UD at its stub, r1 = -EINVAL
    rest = rest[2:]
    n = 2 * len(TRAP_TABLE_REFUSALS)
    got = [
        (name, pv.error_of(r1), r2)
        for (name, *_), r1, r2 in zip(TRAP_TABLE_REFUSALS, rest[:n:2], rest[1:n:2], strict=True)
    ]
    assert got == TRAP_TABLE_REFUSALS
    rest = rest[n:]
    assert pv.error_of(rest[0]) == E.ENOSYS  # no such call
    # The transport outside the page with r7 = version: ENOSYS where the immediate carries the
    # number too (hcall, vmcall), the version where int 0x82's number is r7 alone (§2.2).
    assert rest[2] == (pv.PV_ABI_VERSION if pv.transport_for(profile) is T.INT else refusal(E.ENOSYS))
    others = rest[:2] + rest[3:]
    got = [
        (name, *outcome(r1, r2)) for (name, *_), r1, r2 in zip(OTHER_REFUSALS, others[::2], others[1::2], strict=True)
    ]
    assert got == OTHER_REFUSALS
    c = vm.counters
    assert c["traps_delivered"] == len(PRIVILEGED) + 3
    assert c["refused_ENOSYS"] == (1 if profile in RING3 else 2) and c["refused_EBADPORT"] == 3


@each_profile
def test_an_exception_before_the_trap_table_stops_the_vm(profile):
    image = assemble(".org 0x1000\n_start: cli\n.align 4096\nhypercall_page: .space 4096\n")
    vmm = ParavirtVMM(Machine(profile, default_host_memory(MEMORY)))
    vm = vmm.create_vm(image, CONFIG)
    vmm.run(2000)
    assert vm.stop == "shutdown"
    assert "vector 13" in vm.stop_reason and "0x1000" in vm.stop_reason


# ---- events (docs/paravirt-abi.md §5) -------------------------------------------------------------------


@each_profile
def test_timer_events_come_through_the_trap_table_as_the_mask_allows(profile):
    vm = run("events", profile=profile)
    assert (vm.stop, vm.exit_code) == ("exit", 0)
    out = words(vm.console)
    upcall = [FLAGS_IF, 1]  # the frame's FLAGS: events were allowed; at the handler: masked
    state = out[0:3]
    assert state == [0, 1, 1]  # masked: the deadline passed, the event waits pending
    assert out[3:5] == upcall and out[5:8] == [1, 0, 0]  # sti as a store, then version: taken
    assert out[8:11] == [1, 1, 0]  # the port masked: pending, no upcall pending
    assert out[11:13] == upcall and out[13:16] == [2, 0, 0]  # evtchn_unmask re-raised it
    deadline = out[16]
    assert out[17:19] == upcall  # the upcall on block's return, before the guest reads its result
    block_r1, time_after = out[19:21]
    assert block_r1 == 0 and time_after > deadline  # blocked until the deadline, woken by the timer
    assert out[21:24] == [3, 0, 0]
    assert out[24:26] == upcall and out[26:29] == [4, 0, 0]  # a deadline already passed: at once
    assert out[29:32] == [4, 0, 0]  # disarmed: nothing
    c = vm.counters
    assert c["events_delivered"] == c["hypercall_iret"] == 4
    assert 900 < c["halted_ticks"] < 1000  # the block's wait, as halted time of the guest's clock
    assert c["guest_ticks"] == c["host_ticks"] + c["halted_ticks"] + c["events_delivered"]


@each_profile
def test_blocking_with_nothing_to_wake_the_guest_halts_it(profile):
    vm = run("block_forever", profile=profile)
    assert (vm.console, vm.stop, vm.exit_code) == (b"block\n", "halted", None)


# ---- the fast system call (docs/paravirt-abi.md §6.3) ------------------------------------------------


@each_profile
def test_user_mode_faults_and_system_calls_reach_the_kernel_with_user_frames(profile):
    vm = run("syscall", profile=profile)
    assert (vm.stop, vm.exit_code) == ("exit", 0)
    out = words(vm.console)
    assert out[:3] == [0, 0, 5]  # set_trap_table; the batch giving user mode its pages
    assert out[3:6] == [0, 12, 0]  # the user table's batch (12 requests) and set_cr3 with it
    assert out[6:9] == [3, FLAGS_IF, 0x90000 - 32]  # the fast gate's frame: cs 3, IF, on the kernel stack
    user_gp = [13, 0, 3, FLAGS_IF]
    assert out[9:14] == [*user_gp, 0]  # hcall from user mode: #GP(0) (§2.4)
    assert out[14:19] == [13, pv.PV_REFUSED_INT_ERROR, 3, FLAGS_IF, 0]  # int 0x82: #GP(0x412)
    assert out[19:24] == [6, 0, 3, FLAGS_IF, 0]  # vmcall: #UD
    # A kernel page: #PF(P|U) where PTE_U keeps user mode out of the one table; on ring-3 hosts
    # user mode runs on the user table the guest gave, which does not map it: #PF(U) (§7.4).
    error = 4 if profile in RING3 else 5
    assert out[24:29] == [14, error, 3, FLAGS_IF, 0x1000]
    assert len(out) == 29


@pytest.mark.parametrize("profile", ["x86-2005", "x86-64-2005", "vtx-2006"])
def test_fast_system_calls_enter_the_vmm_only_where_the_host_needs_it(profile):
    # Counted from the host's side (conformance.api.run_alone: HostWatch in a child process), as
    # the efficiency tests count host entries: the 101 system calls of user mode reach the kernel
    # through a real trap gate — of the VM's IDT on x86-2005, of the guest-mode IDT on vmx hosts —
    # never through the VMM; without PV_GATE_FAST each is one entry.  On ring-3 hosts both are
    # one entry each: the VMM switches from the user table to the kernel's (§6.3, §7.4).
    fast = run_alone(ParavirtVMM, assemble_file(GUESTS / "syscall.s"), CONFIG, profile=profile)
    slow = run_alone(ParavirtVMM, assemble_file(GUESTS / "syscall_slow.s"), CONFIG, profile=profile)
    assert fast.observation.equivalent(slow.observation) and fast.observation.stop == "exit"
    transport = pv.transport_for(profile)
    # set_trap_table, stack_switch, two batches, set_cr3, an iret per system call and user fault,
    # console_write and sched_op at the end
    hypercalls = 1 + 1 + 2 + 1 + (101 + 4) + 2
    if transport is T.HCALL:
        assert (fast.host.exits["HCALL"], fast.host.exits["HOST_GATE"]) == (hypercalls, 4)  # the four user faults
        assert slow.host.exits["HOST_GATE"] == 4 + 101
        assert fast.host.counters["insn_host_cpl0"] == 0  # nothing of the guest ever ran at ring 0
    elif transport is T.INT:
        # Every hypercall and every event from user mode is a host-gate exit; the fast gate is one too.
        assert fast.host.exits == slow.host.exits == {"HOST_GATE": hypercalls + 4 + 101}
        assert fast.host.counters["insn_host_cpl0"] == fast.host.counters["insn_host_cpl1"] == 0  # all at ring 3
    else:
        c = fast.host.counters
        # vmcall exits: the hypercalls and user mode's vmcall (#UD, §2.4); exception exits: the other three faults
        assert (c["vm_exit_18"], c["vm_exit_0"]) == (hypercalls + 1, 3)
        assert slow.host.counters["vm_exit_0"] == 3 + 101  # int 0x80 at a not-present gate: #GP, an exception exit
        assert c["insn_host_cpl0"] == c["insn_host_cpl1"] == c["insn_host_cpl3"] == 0  # all in guest mode
        assert c["insn_guest_cpl0"] == c["insn_guest_cpl2"] == 0 and c["insn_guest_cpl1"] and c["insn_guest_cpl3"]
    assert slow.host.entries - fast.host.entries == (0 if transport is T.INT else 101)


# ---- what each transport's host does (docs/paravirt-abi.md §2.3, §2.4, §7.4, §8) ----------------------


@pytest.mark.parametrize("profile", sorted(RING3))
def test_on_ring3_hosts_int_0x82_is_a_hypercall_from_the_kernel_only(profile):
    # hello's three hypercalls are three host-gate exits of int 0x82, numbered by r7 (§2.3); the
    # syscall guest's user-mode int 0x82 is #GP(0x412) through its trap table (§2.4), asserted by
    # test_user_mode_faults_and_system_calls_reach_the_kernel_with_user_frames.
    hello = run_alone(ParavirtVMM, assemble_file(GUESTS / "hello.s"), CONFIG, profile=profile)
    assert hello.host.exits == {"HOST_GATE": 3}
    assert hello.host.counters["exception_130"] == 3  # int 0x82 reached the host gate three times
    vm = run("syscall", profile=profile)
    c = vm.counters
    assert c["hypercall_version"] == 0 and c["refused_ENOSYS"] == 0  # the user's int 0x82 was no hypercall
    assert c["traps_delivered"] == 101 + 4  # the system calls and the four user faults


@pytest.mark.parametrize("profile", sorted(RING3))
def test_on_ring3_hosts_user_mode_runs_on_the_user_table(profile):
    vmm, vm = boot("syscall", profile=profile)
    seen: list[tuple[bool, int]] = []
    side = vm.side
    enter_user, enter_kernel = side.enter_user, side.enter_kernel

    def to_user() -> None:
        enter_user()
        seen.append((True, vmm.host.cpu.cr3))

    def to_kernel() -> None:
        enter_kernel()
        seen.append((False, vmm.host.cpu.cr3))

    side.enter_user, side.enter_kernel = to_user, to_kernel
    while vm.stop is None:
        vmm.run(2000)
    assert vm.exit_code == 0
    base = vm.mem_base
    kernel, user = vm.tables.bases
    assert user == base + 0x23000  # the guest's user L4 (set_cr3's user base)
    assert set(seen) == {(True, user), (False, kernel)}  # every switch, both ways
    assert len(seen) == 2 * (101 + 4)  # in and out for each system call and user fault
    # The VMM's own pages are supervisor: out of the kernel's reach at CPL 3, without a limit.
    vmm.host.cpu.cr3 = kernel
    assert vmm.host.walk(IDT_VA, "read", cpl=3).fault == PF
    assert vmm.host.walk(IDT_VA, "read", cpl=0).fault == 0


@pytest.mark.parametrize("profile", ["vtx-2006", "vtx-2009"])
def test_on_vmx_hosts_hypercalls_are_vmcall_exits_and_the_kernel_runs_at_guest_ring_1(profile):
    hello = run_alone(ParavirtVMM, assemble_file(GUESTS / "hello.s"), CONFIG, profile=profile)
    c = hello.host.counters
    assert hello.host.exits == {"VM": 3} and c["vm_exit_18"] == 3  # VMCALL, qualification n
    assert c["insn_guest_cpl1"] == c["insn_guest_cpl0"] + 27 == 27  # the kernel at guest ring 1
    # No shadow and no nested paging: the guest's own validated tables, walked in one dimension;
    # with vpid (vtx-2009) its translations survive the VM transitions (docs/vmx.md V.7).
    assert c["walks_2d"] == 0 and c["walks"] > 0
    assert (c["vm_transition_flushes"] == 0) == (profile == "vtx-2009")
    vm = run("traps", profile=profile)  # privileged instructions: #GP(0) at guest ring 1, by privilege (V.3)
    assert vm.counters["traps_delivered"] == len(PRIVILEGED) + 3


# ---- devices on rings (docs/paravirt-abi.md §9) ------------------------------------------------------

DISK = b"".join(bytes([i]) * 512 for i in range(16))
BLOCK_RESPONSES = [0, 0, E.EINVAL, E.EINVAL, E.E2BIG, E.ERANGE, E.ENOTOWNED, E.EWRITABLE]


@each_profile
def test_the_console_and_block_rings(profile):
    config = VMConfig(memory=MEMORY, budget=400_000, disk=DISK, console_input=b"abc")
    vmm, vm = boot("rings", config, profile)
    area = pv.pv_area(MEMORY)
    assert vmm.host.read_u64(vm.mem_base + area.start_info + pv.START_INFO.offset("block_sectors")) == 16
    boot_l4 = vmm.host.read(vm.mem_base + area.tables, 4096)
    while vm.stop is None:
        vmm.run(2000)
    assert (vm.stop, vm.exit_code) == ("exit", 0)
    assert vm.console.startswith(b"ring out\nabc")  # the output ring, then the input echoed through it
    out = words(vm.console[12:])
    assert out[:4] == [0, 9, 3, 12]  # send; out_cons; in_prod (the input, before the first instruction); out_cons
    assert out[4:6] == [0, 8]  # send; rsp_prod: one response per request
    responses = out[6:22]
    assert responses[0::2] == list(range(8))  # ids, in request order
    assert [pv.error_of(s) if s else 0 for s in responses[1::2]] == BLOCK_RESPONSES
    assert out[22] == 0x0101_0101_0101_0101  # sector 1 read into memory
    assert vm.disk == DISK[: 3 * 512] + b"\x77" * 512 + DISK[4 * 512 :]  # sector 3 written, nothing else
    after = words(vmm.host.read(vm.mem_base + area.tables, 4096))
    assert [w & ~0x60 for w in after] == [w & ~0x60 for w in words(boot_l4)]  # the refused DMA (A, D: the walker's)
    assert (vm.counters["block_requests"], vm.counters["block_refused"]) == (2, 6)


@each_profile
def test_impossible_ring_indices_stop_the_vm_naming_the_ring(profile):
    vm = run("ring_bug", profile=profile)
    assert (vm.stop, vm.exit_code, vm.console) == ("shutdown", None, b"")
    assert "console ring" in vm.stop_reason


# ---- several VMs on one VMM ----------------------------------------------------------------------------


@each_profile
def test_vms_side_by_side_behave_as_alone(profile):
    # (guests whose output does not depend on mem_base: the machine addresses differ side by side)
    alone = {name: run(name, profile=profile).observation() for name in ("events", "syscall", "traps", "pagetable")}
    vmm = ParavirtVMM(Machine(profile, default_host_memory(3 * MEMORY)))
    vms = {name: vmm.create_vm(assemble_file(GUESTS / f"{name}.s"), CONFIG) for name in alone}
    while any(vm.stop is None for vm in vms.values()):
        vmm.run(2000)
    for name, vm in vms.items():
        assert vm.observation().equivalent(alone[name]), "\n".join(
            alone[name].diff(vm.observation(), ("alone", "beside"))
        )
