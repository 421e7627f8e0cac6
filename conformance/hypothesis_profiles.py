"""The hypothesis profiles of popek's tests: popek-dev, popek-ci, popek-ci-random and popek-thorough.

They are registered under popek's own names and applied to popek's tests alone (``settings()``
makes each test's settings with the chosen profile as parent): installing popek changes no
other project's hypothesis settings.  A run chooses with the plugin's
``--popek-hypothesis-profile`` (``dev``, ``ci``, ``ci-random``, ``thorough``, or any registered
profile by its full name); without it, ``POPEK_HYPOTHESIS_PROFILE``, else ``ci`` when the ``CI``
variable is set, else ``dev``.  tox does not pass ``CI``, so tox chooses ``ci`` explicitly.

``ci`` is derandomized and keeps no example database, so a CI failure reproduces exactly.
``ci-random`` is ``ci`` with a random seed: CI's second pass of the generated tests draws the
seed per run and prints it (``--hypothesis-seed=N`` replays it), so that over many runs the
search covers more than one fixed set of examples (a fixed seed once hid real bugs).
The generated-guest equivalence tests take more examples than the rest
(``generated_max_examples``): they are where VMM bugs are found.  An example costs some
0.05-0.1 s (the guest assembled, run natively and in a child process under the VMM; a VMM
with an expected deviation runs the explanation too), and CI runs these tests for every
reference VMM on every profile, derandomized and again under a fresh seed: 200 examples a
test there; ``thorough`` and many seeds (``.ci/seeds.sh``) go further.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hypothesis import settings as Settings

PROFILES = ("dev", "ci", "ci-random", "thorough")
"""popek's profiles by their short names (registered as ``popek-<name>``)."""
PREFIX = "popek-"
ENV_PROFILE = "POPEK_HYPOTHESIS_PROFILE"
# Examples of each generated-guest equivalence test per profile (at least the profile's own).
_GENERATED_EXAMPLES = {"ci": 200, "ci-random": 200}
_active: str | None = None
_registered = False


def register() -> None:
    """Register popek's profiles once per process (loading none: a run chooses with
    ``activate``); a later call keeps what is registered, so a plugin may replace one."""
    global _registered
    if _registered:
        return
    _registered = True
    from hypothesis import HealthCheck, Phase, settings  # here: naming PROFILES costs no import

    settings.register_profile(PREFIX + "dev", max_examples=50, deadline=None)
    ci = settings(
        max_examples=100,
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        # No explain phase: it re-runs a failing example a hundred times and more to annotate
        # it, and a conformance failure (a guest run natively and under a VMM) is the costly
        # kind; the shrunk example and its observation diff are the report.
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.register_profile(PREFIX + "ci", ci)
    settings.register_profile(PREFIX + "ci-random", ci, derandomize=False)
    settings.register_profile(
        PREFIX + "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )


def default_choice() -> str:
    """The profile a run uses when it names none: ``POPEK_HYPOTHESIS_PROFILE``, else ``ci`` when
    the ``CI`` variable is set, else ``dev``."""
    return os.environ.get(ENV_PROFILE) or ("ci" if os.environ.get("CI") else "dev")


def full_name(choice: str) -> str:
    """The registered name of a choice: ``ci`` is ``popek-ci``; any other name is taken as it is."""
    return PREFIX + choice if choice in PROFILES else choice


def activate(choice: str) -> None:
    """Make ``choice`` the profile of popek's tests in this process (``settings``); ``ValueError``
    naming the profiles there are when no such profile is registered."""
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    register()
    try:
        settings.get_profile(full_name(choice))
    except InvalidArgument:
        from cffi_core.profiles import did_you_mean

        raise ValueError(
            f"no hypothesis profile {choice!r}{did_you_mean(choice, PROFILES)} (popek's: {', '.join(PROFILES)}; "
            "or a registered profile's full name)"
        ) from None
    global _active
    _active = choice


def active() -> str:
    """The choice of this process (``activate``), else ``default_choice()``."""
    return _active if _active is not None else default_choice()


def settings(**overrides: Any) -> Settings:
    """Settings for one of popek's tests: the active profile with ``overrides`` on top.  Test
    modules call it when they are imported, which is after the plugin has activated the run's
    choice (``pytest_configure`` comes before collection)."""
    from hypothesis import settings as _settings

    register()
    return _settings(parent=_settings.get_profile(full_name(active())), **overrides)


def generated_max_examples() -> int:
    """The examples a generated-guest equivalence test runs under the active profile: the
    profile's ``max_examples``, raised to 200 under ``ci`` and ``ci-random``."""
    return max(settings().max_examples, _GENERATED_EXAMPLES.get(active(), 0))
