"""FLAGS (manual §2, §4.3, §6.4): pushf shows the real FLAGS; popf and iret silently keep IF
when CPL > IOPL and IOPL when CPL > 0, write TF, and drop the other bits; cli/sti."""

from __future__ import annotations

import pytest
from spec_rig import CODE, STACK, Rig

from cffi_core.isa.encoding import encode
from cffi_core.spec import FLAGS_IF, FLAGS_IOPL, FLAGS_TF, GP, SP

RESERVED_BITS = 0xFFFF_0000_0000_00FF


def after_pop(mnemonic: str, cpl: int, iopl: int, old_if: bool, popped: int) -> int:
    rig = Rig()
    s = rig.state
    s.cpl, s.flags = cpl, iopl << 12 | (FLAGS_IF if old_if else 0)
    if mnemonic == "popf":
        rig.write64(STACK, popped)
    else:
        for i, value in enumerate((CODE + 4, cpl, popped, STACK)):
            rig.write64(STACK + 8 * i, value)
    rig.code(encode(mnemonic))
    rig.run(1)
    assert s.pc == CODE + 4 and s.cpl == cpl
    return s.flags


@pytest.mark.parametrize("mnemonic", ["popf", "iret"])
@pytest.mark.parametrize("cpl", range(4))
@pytest.mark.parametrize("iopl", range(4))
def test_popped_flags_follow_the_popf_rules(mnemonic, cpl, iopl):
    for old_if in (False, True):
        popped = (FLAGS_TF | (0 if old_if else FLAGS_IF) | ((3 - iopl) << 12)) | RESERVED_BITS
        flags = after_pop(mnemonic, cpl, iopl, old_if, popped)
        assert flags & FLAGS_TF, "TF is always written"
        assert bool(flags & FLAGS_IF) == (old_if if cpl > iopl else not old_if), "IF changes only if CPL <= IOPL"
        assert (flags & FLAGS_IOPL) >> 12 == (3 - iopl if cpl == 0 else iopl), "IOPL changes only at CPL 0"
        assert not flags & RESERVED_BITS


def test_pushf_pushes_the_real_flags_at_cpl_3(rig):
    s = rig.state
    s.cpl, s.flags = 3, FLAGS_IF | FLAGS_IOPL
    rig.code(encode("pushf"))
    rig.run(1)
    assert rig.read64(s.r[SP]) == FLAGS_IF | FLAGS_IOPL


def test_popf_then_pushf_round_trips_at_cpl_0(rig):
    rig.write64(STACK - 8, FLAGS_IF | 2 << 12)
    rig.state.r[SP] = STACK - 8
    rig.code(encode("popf"), encode("pushf"))
    rig.run(2)
    assert rig.state.flags == FLAGS_IF | 2 << 12
    assert rig.read64(STACK - 8) == FLAGS_IF | 2 << 12


@pytest.mark.parametrize("cpl, iopl, allowed", [(0, 0, True), (3, 3, True), (2, 1, False), (1, 1, True)])
def test_cli_and_sti_obey_iopl(cpl, iopl, allowed):
    for mnemonic, before, after in (("cli", FLAGS_IF, 0), ("sti", 0, FLAGS_IF)):
        rig = Rig()
        rig.state.cpl, rig.state.flags = cpl, iopl << 12 | before
        rig.code(encode(mnemonic))
        if allowed:
            rig.run(1)
            assert rig.state.flags == iopl << 12 | after
        else:
            assert rig.event() == (GP, 0)
            assert rig.state.flags == iopl << 12 | before
