"""The hypothesis profiles every popek test run chooses from: dev, ci and thorough.

``ci`` is derandomized and keeps no example database, so a CI failure reproduces exactly;
tox does not pass the ``CI`` variable, so tox selects it with ``--hypothesis-profile=ci``.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

PROFILES = ("dev", "ci", "thorough")


def register() -> None:
    """Register the three profiles and load the one the environment asks for (default dev;
    ``ci`` when the CI variable is set; ``HYPOTHESIS_PROFILE`` overrides both)."""
    settings.register_profile("dev", max_examples=50, deadline=None)
    settings.register_profile(
        "ci",
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
    settings.register_profile(
        "thorough", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
    )
    default = "ci" if os.environ.get("CI") else "dev"
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", default))
