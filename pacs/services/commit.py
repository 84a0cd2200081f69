"""Group commit: the index writes of stores that arrive together share one commit.

Room: services/. Imports index/ and archive/; no protocol. A store hands in its placed file
and index entry and waits. One waiting store at a time becomes the writer: it takes every
store waiting in this process (all associations), fsyncs each folder they renamed into once,
indexes them all in one transaction, commits once, and then wakes each store with its own
outcome. Stores that arrive during a commit wait for the next one. No store learns its outcome
before its folder fsync and the commit both returned: "Success means durable" holds for each.

The writer is whichever waiting thread finds no commit running (leader/follower), not a
thread of its own: a lone association commits at once in its own thread, with no hand-off,
and there is nothing to start or stop.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from pacs.archive.files import Archive, ArchiveError
from pacs.index.database import Index
from pacs.index.records import AddResult, IndexEntry, IndexUnavailable

log = logging.getLogger("pacs.commit")

# Most stores in one transaction; more wait for the next (bounds one commit's duration).
MAX_BATCH = 256


@dataclass
class _Pending:
    entry: IndexEntry
    result: AddResult | None = None
    error: Exception | None = None
    done: bool = False


@dataclass
class CommitStats:
    """How many commits ran and how many stores they carried (for logs, tests and metrics)."""

    commits: int = 0
    stores: int = 0
    largest: int = 0


class GroupCommit:
    """Batches the folder fsyncs and index commits of concurrent stores in one process."""

    def __init__(self, archive: Archive, index: Index, replace: bool = False,
                 max_batch: int = MAX_BATCH):
        self.archive = archive
        self.index = index
        self.replace = replace
        self.max_batch = max_batch
        self.stats = CommitStats()
        self._condition = threading.Condition()
        self._waiting: list[_Pending] = []
        self._committing = False

    def commit(self, entry: IndexEntry) -> AddResult:
        """Make `entry`'s renamed file and its index row durable; returns once both are.

        Raises ArchiveError when its folder could not be synced and IndexUnavailable when the
        index write failed; in both cases its row is not committed.
        """
        pending = _Pending(entry)
        with self._condition:
            self._waiting.append(pending)
        while True:
            with self._condition:
                while not pending.done and self._committing:
                    self._condition.wait()
                if pending.done:
                    break
                # No commit running: this thread writes for everyone waiting, oldest first.
                self._committing = True
                batch = self._waiting[:self.max_batch]
                del self._waiting[:self.max_batch]
            try:
                self._commit(batch)
            finally:
                with self._condition:
                    self._committing = False
                    self._condition.notify_all()
        if pending.error is not None:
            raise pending.error
        assert pending.result is not None
        return pending.result

    def _commit(self, batch: list[_Pending]) -> None:
        """Sync the batch's folders, index it in one transaction; every store ends done."""
        try:
            self.archive.sync_folders(p.entry.file_path for p in batch)
            self._index(batch)
        except (ArchiveError, IndexUnavailable) as exc:
            for pending in batch:
                pending.error = type(exc)(str(exc))  # one object per thread that raises it
        except Exception as exc:  # a waiting store must never be left without an outcome
            log.exception("group commit of %d stores failed", len(batch))
            for pending in batch:
                pending.error = IndexUnavailable(f"internal error while committing: {exc}")
        finally:
            self.index.end_operation()
            with self._condition:
                for pending in batch:
                    if pending.result is None and pending.error is None:
                        pending.error = IndexUnavailable("not committed")
                    pending.done = True
                stats = self.stats
                stats.commits += 1
                stats.stores += len(batch)
                stats.largest = max(stats.largest, len(batch))

    def _index(self, batch: list[_Pending]) -> None:
        try:
            results = self.index.add_instances([p.entry for p in batch], self.replace)
        except Exception as exc:  # noqa: BLE001 - whatever failed, one store may be the cause
            if len(batch) == 1:
                raise
            # One bad entry must not fail the others: index each in its own transaction.
            log.warning("group commit of %d stores failed (%s); committing one by one",
                        len(batch), exc)
            for pending in batch:
                try:
                    pending.result = self.index.add_instance(pending.entry, self.replace)
                except IndexUnavailable as single:
                    pending.error = single
                except Exception as single:  # noqa: BLE001 - this store's failure alone
                    log.exception("indexing %s failed",
                                  pending.entry.instance.get("sop_instance_uid"))
                    pending.error = IndexUnavailable(f"internal error while indexing: {single}")
            return
        for pending, result in zip(batch, results, strict=True):
            pending.result = result
