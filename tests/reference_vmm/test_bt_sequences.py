"""Binary translation's in-TC sequences (call, callr, jr, ret, rdtsc) and one-word vCPU accesses through GS: equivalence, exact time, counts."""

from __future__ import annotations

import pytest

import conformance.api as api
from cffi_core.asm import assemble
from cffi_core.isa.encoding import encode
from cffi_core.spec import decode_word
from conformance.api import VMConfig, observe
from reference_vmm.binary_translation import BinaryTranslationVMM
from reference_vmm.binary_translation.translator import (
    GS_POOL,
    SEQUENCE_LENGTHS,
    SEQUENCES,
    _sequence,
)
from reference_vmm.native import NativeVMM

CONFIG = VMConfig(memory=4 << 20, budget=600_000)
# The TC protected by segment limits, and by paging alone; on classic-1974 the guest kernel is not
# translated (it runs directly at ring 3: test_binary_translation.py).
PROFILES = ["x86-2005", "x86-64-2005"]

# A guest kernel's start: a stack, an IDT whose vector 32 (IRQ 0, priority class 2: a TPR of 2
# or more holds it back) is a ring-0 interrupt gate to ``tick``, and the timer running every
# {period} ticks.
_TIMER = """
.equ PIC_CMD, 0x20
.equ PIC_MASK, 0x21
.equ TIMER_COUNT, 0x40
.equ TIMER_CTRL, 0x41
_start: li sp, 0x9000
        li r1, 0x8000
        lidt r1
        li r2, 0x8000 + 16 * 32
        la r3, tick
        sd r3, [r2]
        li r3, 1                    ; present interrupt gate, ring 0
        sd r3, [r2 + 8]
        li r1, 0xfffe
        out PIC_MASK, r1
        li r1, {period}
        out TIMER_COUNT, r1
        li r1, 3                    ; enable, periodic
        out TIMER_CTRL, r1"""

# A kernel that calls, returns and jumps indirectly in a loop while a timer of an odd period
# interrupts it, and mixes the TSC it reads into a checksum: an interrupt taken one tick early
# or late, or a TSC read that counts the VMM's own words, changes the exit code.
_TRANSFERS = (
    _TIMER
    + """
        sti
        li r10, {rounds}
        li r9, 0
loop:   call f1
        la r1, f2
        callr r1
        la r1, back
        jr r1
        ud
back:   rdtsc r2
        xor r9, r9, r2
        li r7, 70                   ; straight-line work: the sequences' host ticks beyond
inner:  addi r8, r8, 3              ; their guest ticks stay within the VMM's share of a
        xor r9, r9, r8              ; slice (docs/vmm-api.md §9)
        addi r7, r7, -1
        bne r7, r0, inner
        addi r10, r10, -1
        bne r10, r0, loop
        cli
        add r9, r9, r4
        out 0x500, r9
f1:     addi r9, r9, 1
        ret
f2:     shli r3, r9, 3
        add r9, r9, r3
        ret
tick:   push r1                     ; the loop's registers survive the interrupt
        push r5
        addi r4, r4, 1
        rdtsc r5
        add r9, r9, r5
        li r1, 0x20
        out PIC_CMD, r1             ; EOI
        pop r5
        pop r1
        iret
"""
)


def _both(source: str, profile: str, config: VMConfig = CONFIG):
    image = assemble(source)
    native = observe(NativeVMM, image, config, profile=profile)
    translated = observe(BinaryTranslationVMM, image, config, profile=profile, isolate=False)
    assert native.equivalent(translated), "\n".join(native.diff(translated, ("native", "binary-translation")))
    return native, translated


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize("period", [37, 101, 1009])
def test_transfers_run_in_the_tc_and_interrupts_arrive_at_the_native_instruction(profile, period):
    rounds = 300
    native, translated = _both(_TRANSFERS.format(period=period, rounds=rounds), profile)
    assert native.stop == "exit" and native.exit_code != 0
    c = translated.counters
    # No call, callr, jr or ret goes out to the VMM: each runs as its in-TC sequence, or in the
    # spec when a timer exit stopped it halfway or the slice's share of host ticks beyond the
    # guest's was spent (hidden_share).
    for mnemonic in ("call", "callr", "jr", "ret"):
        assert c.get(f"callout_{mnemonic}", 0) == 0, mnemonic
        assert c[f"in_tc_{mnemonic}"] > 0, mnemonic
    assert c["tc_lookup_misses"] <= 10  # the inline lookup misses once per target, then hits
    if period >= 1000:
        # A timer every thousand ticks leaves the VMM's share of each slice nearly unspent:
        # almost every transfer runs in the TC.
        assert rounds * 0.9 <= c["in_tc_call"] <= rounds
        assert rounds * 0.9 <= c["in_tc_callr"] <= rounds
        assert rounds * 0.9 <= c["in_tc_jr"] <= rounds
        assert 2 * rounds * 0.9 <= c["in_tc_ret"] <= 2 * rounds
        assert c["tc_lookup_hits"] >= 4 * rounds * 0.9
        assert c["guest_insns_emulated"] < 0.01 * c["guest_insns_direct"]


@pytest.mark.parametrize("slice_ticks", [1, 3, 13])
def test_tiny_host_timer_slices_stop_sequences_anywhere_and_the_guest_stays_exact(monkeypatch, slice_ticks):
    # Every few ticks the VMM is called back: the real CPU stops inside sequences at every
    # position, before and after their guest instruction took effect.
    monkeypatch.setattr(api, "OBSERVE_SLICE", slice_ticks)
    _both(_TRANSFERS.format(period=53, rounds=40), "x86-2005", VMConfig(memory=4 << 20, budget=40_000))


_VCPU = """
_start: li sp, 0x9000
        li r1, 0x8000
        lidt r1
        li r10, 200
        li r9, 0
loop:   smsw r2
        sidt r3
        mfcr r4, cr0
        mfcr r5, cr4
        mfcr r6, cr8
        cli
        add r9, r9, r2
        xor r9, r9, r3
        add r9, r9, r4
        add r9, r9, r5
        add r9, r9, r6
        addi r10, r10, -1
        bne r10, r0, loop
        out 0x500, r9
"""


@pytest.mark.parametrize("profile", PROFILES)
def test_reads_of_the_virtual_cpu_and_cli_are_one_word_each_without_a_callout(profile):
    # cli runs for real at ring 1 (IOPL 1 in the TC); smsw, sidt and mfcr read GS.
    _, translated = _both(_VCPU, profile)
    c = translated.counters
    for mnemonic in ("smsw", "sidt", "mfcr"):
        assert c.get(f"callout_{mnemonic}", 0) == 0, mnemonic
    assert c.get("callout_cli", 0) == 0
    assert c["callouts"] <= 2  # lidt, out


# FLAGS and the TPR at guest CPL 0 under a timer: cli/sti run for real at ring 1 (IOPL 1), pushf
# pushes the virtual IOPL, popf and mtcr cr8 are sequences that call out only when an interrupt
# is pending (or popf would change TF or IOPL).  The handler mixes where it lands into r9.
_FLAGS = (
    _TIMER
    + """
        li r1, {iopl} << 12         ; the guest's own IOPL, which pushf must show
        push r1
        popf
        sti
        li r10, {rounds}
        li r9, 0
loop:   cli
        pushf
        pop r2
        xor r9, r9, r2
        addi r9, r9, 3
        li r3, 0x200 | ({iopl} << 12)
        push r3
        popf                        ; IF = 1: a pending interrupt comes right after it
        addi r9, r9, 5
        andi r4, r10, 3
        mtcr cr8, r4                ; TPR 0-3: 2 and 3 hold the timer back
        mfcr r5, cr8
        add r9, r9, r5
        shli r9, r9, 1
        mtcr cr8, r0                ; and let it in here
        addi r9, r9, 7
        cli
        addi r9, r9, 1
        sti
        addi r9, r9, 11             ; in sti's shadow
        li r7, 30                   ; straight-line work, as in _TRANSFERS
inner:  addi r6, r6, 5
        xor r9, r9, r6
        addi r7, r7, -1
        bne r7, r0, inner
        addi r10, r10, -1
        bne r10, r0, loop
        cli
        add r9, r9, r8
        out 0x500, r9
tick:   push r1
        addi r8, r8, 1
        mov r1, r9
        shri r1, r1, 3
        xor r9, r9, r1
        ld r1, [sp + 8]             ; the interrupted pc
        add r9, r9, r1
        li r1, 0x20
        out PIC_CMD, r1
        pop r1
        iret
"""
)


@pytest.mark.parametrize("profile", PROFILES)
@pytest.mark.parametrize(("period", "iopl"), [(29, 0), (97, 3), (1009, 0)])
def test_flags_and_the_tpr_stay_in_the_tc_and_interrupts_arrive_at_the_native_instruction(profile, period, iopl):
    rounds = 300
    native, translated = _both(_FLAGS.format(period=period, rounds=rounds, iopl=iopl), profile)
    assert native.stop == "exit" and native.exit_code != 0
    c = translated.counters
    assert c["in_tc_mtcr"] > 0
    for mnemonic in ("cli", "sti", "pushf"):
        assert c.get(f"callout_{mnemonic}", 0) == 0, mnemonic
    assert c["in_tc_pushf"] > 0 and c["in_tc_popf"] > 0
    if period >= 1000:
        # Hardly ever an interrupt pending: popf and mtcr cr8 nearly always stay in the TC.
        assert c.get("callout_popf", 0) + c.get("callout_mtcr", 0) < 0.05 * rounds
        assert c["in_tc_pushf"] >= 0.9 * rounds and c["in_tc_popf"] >= 0.9 * rounds


@pytest.mark.parametrize("slice_ticks", [1, 4, 11])
def test_tiny_host_timer_slices_stop_the_flags_sequences_anywhere(monkeypatch, slice_ticks):
    monkeypatch.setattr(api, "OBSERVE_SLICE", slice_ticks)
    _both(_FLAGS.format(period=41, rounds=30, iopl=1), "x86-2005", VMConfig(memory=4 << 20, budget=40_000))


def test_every_sequence_has_one_length_and_the_vmm_can_stop_it_at_every_word():
    for mnemonic, length in zip(SEQUENCES, SEQUENCE_LENGTHS, strict=True):
        for r in range(1, 15):
            d = decode_word(encode(mnemonic, rd=r, rs1=r, **({"crn": 8} if mnemonic == "mtcr" else {})))[0]
            seq = _sequence(d, 0x1000, GS_POOL)
            assert len(seq.words) == length
            steps = [seq.step(state, 0) for _, state in seq.words]
            # Exactly one word takes the guest instruction's effect: before it the guest is at
            # the instruction, after it past it; the ledger then covers every word but the
            # guest's, so at the last word one tick of the ledger is still ahead (-1).
            assert [s.done for s in steps] == sorted(s.done for s in steps)
            assert not steps[0].done and steps[-1].done
            assert steps[0].overhead == 0 and steps[-1].overhead == -1
            assert steps[0].restore == ()
            assert all(s.pc == 0x1000 for s in steps if not s.done)


# The guest kernel forges an entry of the TC hash for its jr's target that points into its own
# code: possible only where no segment limit keeps it out of the VMM's data.
_FORGE = """
_start: li sp, 0x9000
        la r1, target
        shri r2, r1, 2
        andi r2, r2, {mask}
        shli r2, r2, 4
        li r3, {hash}
        add r3, r3, r2
        sd r1, [r3]                 ; the key: target's guest pc
        la r4, elsewhere
        sd r4, [r3 + 8]             ; the "fragment": guest code, not the TC
        jr r1
target: li r5, 7
        out 0x500, r5
elsewhere:
        li r5, 9
        out 0x500, r5
"""


def test_a_guest_kernel_that_overwrites_the_vmm_data_stops_itself_alone():
    from reference_vmm.binary_translation.translator import GS_HASH, GS_VA, HASH_ENTRIES

    image = assemble(_FORGE.format(mask=HASH_ENTRIES - 1, hash=GS_VA + GS_HASH))
    run = observe(BinaryTranslationVMM, image, CONFIG, profile="x86-64-2005")
    # Natively the stores are beyond RAM (#MC, then no handler: shutdown); here they reach the
    # VMM's data, the real CPU leaves the TC, and the VM shuts down — the VMM raises nothing.
    assert run.stop == "shutdown"
    assert run.counters["tc_data_overwritten"] == 1


@pytest.mark.parametrize("profile", ["x86-2005", "classic-1974"])
def test_with_a_segment_limit_or_ring_compression_the_same_guest_cannot_reach_the_vmm_data(profile):
    from reference_vmm.binary_translation.translator import GS_HASH, GS_VA, HASH_ENTRIES

    _, translated = _both(_FORGE.format(mask=HASH_ENTRIES - 1, hash=GS_VA + GS_HASH), profile)
    assert translated.counters["tc_data_overwritten"] == 0


# Every obstacle of the x86-like profile and the simple privileged instructions, 200 times each
# at guest CPL 0, with nothing pending: measured from the host's side, they cost no host entry
# of their own (no exit to the VMM) — in-TC sequences and single words, not callouts.
_OBSTACLES = """
_start: li sp, 0x9000
        li r1, 0x8000
        lidt r1
        li r10, 200
loop:   smsw r2
        sidt r3
        rdcs r4
        pushf
        popf
        cli
        sti
        mfcr r5, cr8
        mtcr cr8, r5
        rdtsc r6
        add r9, r9, r2
        add r9, r9, r3
        add r9, r9, r4
        add r9, r9, r6
        li r7, 60
inner:  addi r7, r7, -1
        bne r7, r0, inner
        addi r10, r10, -1
        bne r10, r0, loop
        out 0x500, r9
"""


def test_the_obstacles_at_guest_cpl_0_cost_no_exit_measured_from_the_host():
    from conformance.api import run_alone

    image = assemble(_OBSTACLES)
    native = observe(NativeVMM, image, CONFIG, profile="x86-2005")
    hosted = run_alone(BinaryTranslationVMM, image, CONFIG, profile="x86-2005")
    assert native.equivalent(hosted.observation)
    # 2,000 sensitive or privileged instructions: the real CPU stopped a few times to
    # translate, chain and call out (lidt, out) and once for the first touch of the stack page
    # — never once per instruction — and it retired at ring 1 at least every instruction the
    # guest retired natively (the rest of its ticks are the sequences' own words).
    exits = hosted.host.exits
    assert exits.get("HCALL", 0) + exits.get("HOST_GATE", 0) <= 10, exits
    assert hosted.host.counters["insn_host_cpl1"] >= native.counters["ticks"]
