"""Shared configuration of popek's own tests: they run under popek's hypothesis profile too."""

from __future__ import annotations

import pytest

from conformance import hypothesis_profiles


def pytest_configure(config: pytest.Config) -> None:
    # The plugin applies the profile to the conformance suite's tests alone; these tests are
    # popek's too, so here it is loaded for the whole run (--popek-hypothesis-profile, else the
    # default choice: dev, ci when CI is set).
    from hypothesis import settings

    choice = config.getoption("popek_hypothesis_profile", None) or hypothesis_profiles.default_choice()
    hypothesis_profiles.register()
    settings.load_profile(hypothesis_profiles.full_name(choice))
