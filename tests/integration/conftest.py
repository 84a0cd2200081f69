"""Fixtures the C-MOVE and C-GET tests share: their destinations, started as move_support starts
them (a DCMTK storescp, a pynetdicom receiver) and stopped after the test. A module may define
its own fixture of the same name (test_commitment.py's receiver takes reports)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.move_support import Receiver, StoreSCP, fixture_receiver, fixture_storescp


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[Callable[..., StoreSCP]]:
    """Starts DCMTK storescp destinations (stopped after the test)."""
    yield from fixture_storescp(tmp_path)


@pytest.fixture
def receiver() -> Iterator[Callable[..., Receiver]]:
    """Starts pynetdicom receivers as destinations (stopped after the test)."""
    yield from fixture_receiver()
