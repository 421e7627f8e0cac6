"""The core's directed tests run with the block translator off, translating every run at its first
execution, and after a few executions (docs/architecture.md §15): each must observe the same."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# P64_TRANSLATE, read when a machine is made: "off", or the threshold of executions
TRANSLATOR = {"interpreter": "off", "translate-at-once": "0", "translate-after-3": "3"}


@pytest.fixture(autouse=True, scope="module", params=list(TRANSLATOR))
def translator(request: pytest.FixtureRequest) -> Iterator[str]:
    """Module-scoped (hypothesis refuses function-scoped fixtures): each module runs once per setting."""
    old = os.environ.get("P64_TRANSLATE")
    os.environ["P64_TRANSLATE"] = TRANSLATOR[request.param]
    yield request.param
    if old is None:
        os.environ.pop("P64_TRANSLATE", None)
    else:
        os.environ["P64_TRANSLATE"] = old
