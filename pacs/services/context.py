"""The long-lived objects one server or CLI run works with, built from Settings.

Room: services/. Imports config, index/, archive/ and the other services; no protocol.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pacs.archive.files import Archive
from pacs.config import Settings, check_storage
from pacs.index.database import Index
from pacs.services.access import AccessPolicy
from pacs.services.commitment import CommitmentReporter
from pacs.services.metrics import Metrics
from pacs.services.store import Ingestor

log = logging.getLogger("pacs.commit")


@dataclass
class Services:
    """Settings plus the archive, the index and the store pipeline built on them."""

    settings: Settings
    archive: Archive
    index: Index
    ingestor: Ingestor
    access: AccessPolicy
    metrics: Metrics = field(default_factory=Metrics)
    # Storage commitment requests and their reports (started by the DIMSE face).
    commitments: CommitmentReporter = field(init=False)

    def __post_init__(self) -> None:
        self.commitments = CommitmentReporter(self.settings, self.archive, self.index)

    def close(self) -> None:
        """Close the index (connections of this thread and any pool) and the metrics endpoint."""
        stats = self.ingestor.committer.stats
        if stats.commits:
            log.info("group commit: %d stores in %d commits (at most %d in one)",
                     stats.stores, stats.commits, stats.largest)
        self.metrics.stop()
        self.commitments.stop()
        self.index.close()


def open_services(settings: Settings) -> Services:
    """Open the archive folder and the index named by `settings`."""
    check_storage(settings.storage)
    archive = Archive(settings.storage)
    index = Index(settings.database)
    return Services(settings, archive, index, Ingestor(archive, index, settings.duplicates),
                    AccessPolicy.from_settings(settings))
