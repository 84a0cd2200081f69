"""C-FIND handler (issue #3 replaces this stub)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pacs.handlers.common import status_dataset
from pacs.services import Services
from pacs.status import FindStatus


def handle_find(event: Any, services: Services) -> Iterator[tuple[Dataset, Dataset | None]]:
    """C-FIND: not implemented yet."""
    yield status_dataset(FindStatus.UNABLE_TO_PROCESS, "C-FIND is not implemented yet"), None


def handle_sop_extended(event: Any, services: Services) -> dict[str, bytes]:
    """SOP Class Extended Negotiation (PS3.4 C.4.1.3.1): none accepted yet."""
    return {}
