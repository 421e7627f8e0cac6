"""The hypothesis profiles every popek test run chooses from: dev, ci, ci-random and thorough.

``ci`` is derandomized and keeps no example database, so a CI failure reproduces exactly;
tox does not pass the ``CI`` variable, so tox selects it with ``--hypothesis-profile=ci``.
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

PROFILES = ("dev", "ci", "ci-random", "thorough")
# Examples of each generated-guest equivalence test per profile (at least the profile's own).
_GENERATED_EXAMPLES = {"ci": 200, "ci-random": 200}


def register() -> None:
    """Register the profiles and load the one the environment asks for (default dev; ``ci``
    when the CI variable is set; ``HYPOTHESIS_PROFILE`` overrides both)."""
    from hypothesis import HealthCheck, Phase, settings  # here: naming PROFILES costs no import

    settings.register_profile("dev", max_examples=50, deadline=None)
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
    settings.register_profile("ci", ci)
    settings.register_profile("ci-random", ci, derandomize=False)
    settings.register_profile(
        "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    default = "ci" if os.environ.get("CI") else "dev"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))


def generated_max_examples() -> int:
    """The examples a generated-guest equivalence test runs under the loaded profile: the
    profile's ``max_examples``, raised to 200 under ``ci`` and ``ci-random``."""
    from hypothesis import settings

    current = settings.get_current_profile_name()
    return max(settings.default.max_examples, _GENERATED_EXAMPLES.get(current, 0))
