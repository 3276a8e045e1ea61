"""Function-level tests run the handlers on a fixed, injected clock: no result depends on today."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared import runtime
from tests.helpers import NOW_MS


@pytest.fixture(autouse=True)
def fixed_clock() -> Iterator[int]:
    with runtime.clock(lambda: NOW_MS):
        yield NOW_MS
