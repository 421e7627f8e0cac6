"""The mutant catalog holds what it claims: every mutant is a real bug (its witness shows it), its base VMM passes the same witness, and the catalog covers each property."""

from __future__ import annotations

import pytest

from conformance.api import VMM, load_vmm
from conformance.mutation import PROPERTIES, Mutant, load_catalog
from tests.mutants import ENTRIES, MUTANTS, Entry

MIN_MUTANTS = 30


def _id(mutant: Mutant) -> str:
    # The base in the id too: ``-k binary`` (or ``-k hardware``) selects one technique's mutants.
    return f"{mutant.base}:{mutant.name}"


def _param(entry: Entry) -> pytest.ParameterSet:
    return pytest.param(entry, id=_id(entry.mutant))


def _base_param(entry: Entry) -> pytest.ParameterSet:
    return pytest.param(entry, id=_id(entry.mutant))


def test_the_catalog_has_enough_mutants_for_every_property():
    assert len(MUTANTS) >= MIN_MUTANTS, f"{len(MUTANTS)} mutants, the catalog promises at least {MIN_MUTANTS}"
    for prop in PROPERTIES:
        assert any(m.property == prop for m in MUTANTS), f"no mutant should break {prop}"
    assert len({m.name for m in MUTANTS}) == len(MUTANTS), "two mutants share a name"
    assert load_catalog("tests.mutants") == MUTANTS


def test_every_reference_technique_but_the_oracle_is_mutated():
    assert {m.base for m in MUTANTS} == {
        "emulate",
        "trap-and-emulate",
        "hardware",
        "hardware-ept",
        "binary-translation",
        "paravirt",
    }


@pytest.mark.parametrize("mutant", [pytest.param(m, id=_id(m)) for m in MUTANTS])
def test_a_mutant_is_its_base_vmm_with_one_change(mutant: Mutant):
    cls, base = load_vmm(mutant.vmm), load_vmm(mutant.base)
    assert issubclass(cls, base) and cls is not base
    # The base's name is kept: the suite grades the mutant with the base technique's deviations.
    assert cls.name == base.name == mutant.base
    assert mutant.bug and "\n" not in mutant.bug


def _problem(entry: Entry, vmm: type[VMM]) -> str | None:
    return entry.witness.problem(vmm, entry.mutant.profiles[0])


@pytest.mark.parametrize("entry", [_param(e) for e in ENTRIES])
def test_the_witness_shows_the_mutant_is_a_bug(entry: Entry):
    problem = _problem(entry, load_vmm(entry.mutant.vmm))
    assert problem, f"{entry.mutant.name}: the witness does not tell the mutant from a correct VMM ({entry.mutant.bug})"


@pytest.mark.parametrize("entry", [_base_param(e) for e in ENTRIES])
def test_the_base_vmm_passes_the_witness(entry: Entry):
    problem = _problem(entry, load_vmm(entry.mutant.base))
    assert problem is None, f"{entry.mutant.base} fails the witness of {entry.mutant.name}: {problem}"
