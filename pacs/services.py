"""The long-lived objects one server or CLI run works with, built from Settings.

Layer: above ingest/index/archive, below the protocol layer and the CLI; no pynetdicom.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pacs.access import AccessPolicy
from pacs.archive import Archive
from pacs.config import Settings, check_storage
from pacs.index import Index
from pacs.ingest import Ingestor
from pacs.metrics import Metrics


@dataclass
class Services:
    """Settings plus the archive, the index and the store pipeline built on them."""

    settings: Settings
    archive: Archive
    index: Index
    ingestor: Ingestor
    access: AccessPolicy
    metrics: Metrics = field(default_factory=Metrics)

    def close(self) -> None:
        """Close the index (connections of this thread and any pool) and the metrics endpoint."""
        self.metrics.stop()
        self.index.close()


def open_services(settings: Settings) -> Services:
    """Open the archive folder and the index named by `settings`."""
    check_storage(settings.storage)
    archive = Archive(settings.storage)
    index = Index(settings.database)
    return Services(settings, archive, index, Ingestor(archive, index, settings.duplicates),
                    AccessPolicy.from_settings(settings))
