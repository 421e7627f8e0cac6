"""The paravirtual build of p64os: the native image unchanged, no privileged instruction left, and the workloads equivalent."""

from __future__ import annotations

import hashlib

import pytest

from cffi_core.isa.encoding import decode
from cffi_core.isa.table import Sensitivity
from cffi_core.machine import Machine
from conformance.api import default_host_memory, observe
from conformance.guest_os import os_config, os_image
from conformance.paravirt import Hypercall
from reference_vmm.native import NativeVMM
from reference_vmm.paravirt import ParavirtVMM
from reference_vmm.paravirt.monitor import ParavirtVM

# SHA-256 over (address, bytes) of every segment of os_image(), recorded before the arch layer
# gained its paravirtual hooks: the hooks expand to nothing natively, so the native kernel is
# the same bytes (any change to the native kernel must update this on purpose).
NATIVE_SHA256 = "4646dd595f2d2e9ce9cb516959f2272c8d07d512ac926e5ffa2d9a023d653918"
KERNEL_BASE = 0x1000  # os.s: .org 0x1000; the user text is user-mode code, the same in both builds
PAGE = 4096


def image_hash(image) -> str:
    h = hashlib.sha256()
    for seg in image.segments:
        h.update(seg.address.to_bytes(8, "little"))
        h.update(seg.data)
    return h.hexdigest()


def sensitive_words(image) -> list[tuple[int, str]]:
    """Every word of the kernel's segment that decodes to an instruction that is not innocuous
    (architecture.md §4.2-4.3: privileged, sensitive, host), outside the hypercall page, which
    the VMM fills with its transport (docs/paravirt-abi.md §2.2).  A linear sweep: data words
    count too, so the check is the stronger for it."""
    page = image.symbols.get("hypercall_page")
    (seg,) = [s for s in image.segments if s.address == KERNEL_BASE]
    hits = []
    for off in range(0, len(seg.data) - 3, 4):
        address = seg.address + off
        if page is not None and page <= address < page + PAGE:
            continue
        d = decode(int.from_bytes(seg.data[off : off + 4], "little"))
        if d is not None and d.insn.sensitivity is not Sensitivity.INNOCUOUS:
            hits.append((address, d.insn.mnemonic))
    return hits


def test_native_image_unchanged():
    assert image_hash(os_image()) == NATIVE_SHA256


def test_paravirt_image_defines_a_hypercall_page():
    image = os_image(paravirt=True)
    page = image.symbols["hypercall_page"]
    assert page % PAGE == 0
    assert image.entry == os_image().entry  # the same `boot`
    # The user programs are the same bytes in both builds: only the kernel changes.
    native_user = [s for s in os_image().segments if s.address != KERNEL_BASE]
    pv_user = [s for s in image.segments if s.address != KERNEL_BASE]
    assert native_user == pv_user


def test_sweep_finds_the_native_kernels_privileged_instructions():
    mnemonics = {m for _, m in sensitive_words(os_image())}
    assert {"lidt", "mtcr", "mfcr", "in", "out", "cli", "sti", "hlt", "iret", "invlpg", "wrmsr"} <= mnemonics


def test_paravirt_kernel_has_no_privileged_or_sensitive_instruction():
    assert sensitive_words(os_image(paravirt=True)) == []


def run_paravirt(config):
    host = Machine("x86-2005", default_host_memory(config.memory))
    vmm = ParavirtVMM(host)
    vm = vmm.create_vm(os_image(paravirt=True), config)
    while vm.stop is None and vm.ticks < config.budget:
        vmm.run(20_000)
    return vm


# Paravirtual equivalence (the paravirtualization issue): the paravirtual build under the
# paravirtual VMM shows the console, exit code and disk of the native build run natively.
@pytest.mark.parametrize(
    ("name", "n"),
    [("compute", 16), ("forkwait", 5), ("diskio", 4), ("compile", 2), ("mmu", 64), ("ktest", 1), ("fstest", 1)],
)
def test_workload_equivalent_to_native(name, n):
    config = os_config(name, n)
    native = observe(NativeVMM, os_image(), config)
    vm = run_paravirt(config)
    assert (vm.stop, vm.exit_code) == ("exit", native.exit_code)
    assert vm.console == native.console
    assert vm.disk == native.disk


class BatchRecordingVM(ParavirtVM):
    """A paravirtual VM that also counts the mmu_update calls made while the guest's batch is
    open (its `pv_batch` word is 1: fork's uvm_copy, kernel/vm.s arch_batch_begin..end)."""

    in_batch_calls = 0
    in_batch_requests = 0


def _record_mmu_update(vm, requests, count):
    flag = int.from_bytes(vm._vread(vm.config_image_symbols["pv_batch"], 8), "little")
    if flag:
        vm.in_batch_calls += 1
        vm.in_batch_requests += count
    return ParavirtVM.handlers[Hypercall.MMU_UPDATE](vm, requests, count)


BatchRecordingVM.handlers[Hypercall.MMU_UPDATE] = _record_mmu_update


def run_forkwait_recorded(n):
    config = os_config("forkwait", n)
    image = os_image(paravirt=True)
    vmm = ParavirtVMM(Machine("x86-2005", default_host_memory(config.memory)))
    vmm.vm_class = BatchRecordingVM
    vm = vmm.create_vm(image, config)
    vm.config_image_symbols = image.symbols
    while vm.stop is None and vm.ticks < config.budget:
        vmm.run(20_000)
    assert (vm.stop, vm.exit_code) == ("exit", 0)
    return vm


# What one fork of forkwait's parent copies (kernel/vm.s uvm_copy): its heap is empty and its
# stack is one page table's chunk with at least one page, so the child gets three new tables
# (PDPT, page directory, page table), each pinned by three requests (its kernel mapping made
# read-only, that mapping's invlpg, the pin; include/arch_pv_code.s pv_pin), three directory
# entries, and two leaf entries per page (the parent's made copy-on-write, the child's).
FORK_TABLES = 3
FORK_MIN_REQUESTS = FORK_TABLES * 3 + FORK_TABLES + 2 * 1


def test_fork_page_table_writes_are_batched():
    """The paravirtual fork sends its page-table writes as mmu_update batches (docs/paravirt-abi.md
    §4.5, §7.3; Barham et al. 2003: "amortize each hypercall across 2048 updates"), not one
    hypercall per entry: one stack chunk is one batch.  The difference of two runs cancels init."""
    small, large = run_forkwait_recorded(5), run_forkwait_recorded(9)
    forks = 9 - 5
    calls = (large.in_batch_calls - small.in_batch_calls) / forks
    requests = (large.in_batch_requests - small.in_batch_requests) / forks
    assert requests >= FORK_MIN_REQUESTS
    assert calls == 1  # one chunk: the sync before the child's walk finds the queue empty
    assert requests / calls > 8
    # The VM's own counters agree: every mmu_update inside a fork is counted there too, and each
    # forkwait iteration (fork, exit, wait) makes fewer calls than it sends requests.
    per_iteration_calls = (large.counters["hypercall_mmu_update"] - small.counters["hypercall_mmu_update"]) / forks
    per_iteration_requests = (large.counters["mmu_update_requests"] - small.counters["mmu_update_requests"]) / forks
    assert per_iteration_requests - per_iteration_calls >= requests - calls
