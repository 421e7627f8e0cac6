"""Fixtures of the spec's tests: ``rig``, a fresh spec machine (see spec_rig.py)."""

from __future__ import annotations

import pytest
from spec_rig import Rig


@pytest.fixture
def rig() -> Rig:
    return Rig()
