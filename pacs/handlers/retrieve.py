"""C-MOVE and C-GET handlers (issue #4 replaces this stub)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pacs.handlers.common import status_dataset
from pacs.services import Services
from pacs.status import RetrieveStatus


def handle_move(event: Any, services: Services) -> Iterator[Any]:
    """C-MOVE: not implemented yet."""
    yield None, None
    yield status_dataset(RetrieveStatus.UNABLE_TO_PROCESS, "C-MOVE is not implemented yet"), None


def handle_get(event: Any, services: Services) -> Iterator[Any]:
    """C-GET: not implemented yet."""
    yield 0
    yield status_dataset(RetrieveStatus.UNABLE_TO_PROCESS, "C-GET is not implemented yet"), None


def unused(_: Dataset) -> None:  # pragma: no cover
    """Placeholder so imports stay used until the real handlers land."""
