"""Named machine profiles: the feature sets of docs/architecture.md §12.

A profile says which hardware a Machine models.  A name may add features to a named
profile: ``vtx-2009+iommu`` is the machine of the I/O experiments (docs/benchmarks.md §5).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass

# Feature name -> bit of p64_config.features (cffi_core/csrc/p64.h).
FEATURE_BITS: dict[str, int] = {
    "classic": 1,
    "seglimit": 2,
    "vmx": 4,
    "ept": 8,
    "vpid": 16,
    "tpr_shadow": 32,
    "iommu": 64,
    "pwc": 128,
}



@dataclass(frozen=True)
class Profile:
    """A named machine: its features and what it stands for."""

    name: str
    features: frozenset[str]
    stands_for: str

    def with_features(self, *names: str) -> Profile:
        """This profile plus features (``vtx-2009+iommu``: the I/O experiments' machine)."""
        if not names:
            return self
        return Profile(f"{self.name}+{'+'.join(names)}", self.features | frozenset(names), self.stands_for)

    @property
    def feature_bits(self) -> int:
        bits = 0
        for f in self.features:
            bits |= FEATURE_BITS[f]
        return bits


PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile(
            "x86-2005",
            frozenset({"seglimit"}),
            "32-bit x86 before VT: VMware's BT VMM protects itself with segment limits",
        ),
        Profile(
            "x86-64-2005",
            frozenset(),
            "64-bit x86 before VT: no segment limits, hence ring compression",
        ),
        Profile(
            "classic-1974",
            frozenset({"classic"}),
            "a classically virtualizable machine (every sensitive instruction privileged), as the S/370",
        ),
        Profile("vtx-2006", frozenset({"vmx"}), "first-generation VT-x (Pentium 4 672 of Adams & Agesen 2006)"),
        Profile(
            "vtx-2009",
            frozenset({"vmx", "ept", "vpid", "tpr_shadow", "pwc"}),
            "Nehalem-class hardware with nested paging and tagged TLBs",
        ),
    )
}

DEFAULT_PROFILE = "x86-2005"


class ProfileError(ValueError):
    """An unknown profile or feature, or one the core does not implement yet."""


def get_profile(profile: str | Profile) -> Profile:
    """Look a profile up by name (a Profile passes through after validation)."""
    if isinstance(profile, str):
        base, *extra = profile.split("+")
        try:
            profile = PROFILES[base].with_features(*extra)
        except KeyError:
            known = ", ".join(sorted(PROFILES))
            raise ProfileError(
                f"unknown profile {profile!r}{did_you_mean(base, PROFILES)} "
                f"(known profiles: {known}; add features as NAME+FEATURE)"
            ) from None
    unknown = profile.features - FEATURE_BITS.keys()
    if unknown:
        hint = did_you_mean(min(unknown), FEATURE_BITS) if len(unknown) == 1 else ""
        raise ProfileError(f"profile {profile.name!r}: unknown features {sorted(unknown)}{hint}")
    return profile


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """``"; did you mean 'vtx-2009'?"`` when ``name`` is close to one of ``known``, else ``""``:
    the hint of every "unknown name" message."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def available_profiles() -> list[str]:
    """Names of the profiles a Machine can be built with (all the named ones)."""
    return list(PROFILES)
