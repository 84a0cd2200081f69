"""The Storage Commitment use case (PS3.4 J.3): accept a request durably, check each instance
against its file, and deliver the result until it is delivered, a restart included.

Room: services/. Imports config, archive/, index/ (commitment requests, instances), model/
(commitment, statuses) and services/verify (the file check); no protocol: the face hands in
a `ReportChannel` that knows how to send an N-EVENT-REPORT.

An instance is committed only when the index holds it under the requested SOP Class and its
file exists with the size and SHA-256 the index recorded (the file is read, the row is not
trusted). A request is in the index before its N-ACTION is answered; its report goes on the
requester's association when it is still there, else on a new association to the requester's
AE from the AE table, else it is retried with a growing delay until `commitment.expiry`.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from pydicom.dataset import Dataset

from pacs.archive.files import Archive
from pacs.config import Settings
from pacs.index.commitment import CommitmentRecord, Commitments
from pacs.index.database import Index
from pacs.index.records import IndexUnavailable
from pacs.model.commitment import CommitmentAction, Outcome, event_information
from pacs.model.status import CommitmentFailure, CommitmentStatus, DicomError
from pacs.services.verify import _check_row

log = logging.getLogger("pacs.commitment")

# Who holds a claim: this host, this process, this start (a restarted container reuses its pid).
OWNER = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
_LONGEST_DELAY = 3600.0
_LOOKUP_CHUNK = 500


class ReportChannel(Protocol):
    """How the face sends an N-EVENT-REPORT; each method returns "" on success, else why not."""

    def on_association(self, association: Any, event_type: int, information: Dataset) -> str:
        """Send on the requester's own association, if it is still there."""

    def to_requester(self, calling_ae: str, event_type: int, information: Dataset) -> str:
        """Send on a new association to the requester's AE from the AE table."""


def check_instances(archive: Archive, index: Index,
                    references: Sequence[tuple[str, str]]) -> list[Outcome]:
    """J.3.3.1.2: each referenced instance committed, or its Failure Reason: 0x0112 not held,
    0x0119 held under another SOP Class, 0x0110 its file is missing, unreadable or not the one
    indexed (size, SHA-256)."""
    held = {}
    uids = [sop_instance for _, sop_instance in references]
    for start in range(0, len(uids), _LOOKUP_CHUNK):  # one query per chunk, not per instance
        held.update((r.sop_instance_uid, r) for r in index.instances_for_retrieve(
            sop_instance_uids=uids[start:start + _LOOKUP_CHUNK]))
    outcomes = []
    for sop_class, sop_instance in references:
        record = held.get(sop_instance)
        failure = 0
        if record is None:
            failure = CommitmentFailure.NO_SUCH_OBJECT_INSTANCE
        elif record.sop_class_uid != sop_class:
            failure = CommitmentFailure.CLASS_INSTANCE_CONFLICT
        elif (problem := _check_row(archive, record, checksums=True)) is not None:
            log.error("storage commitment: %s %s: %s (%s)", problem.kind, sop_instance,
                      problem.detail, record.file_path)
            failure = CommitmentFailure.PROCESSING_FAILURE
        outcomes.append(Outcome(sop_class, sop_instance, int(failure)))
    return outcomes


def lease_seconds(settings: Settings) -> float:
    """How long a claim on a request lasts: long enough to check it and send its report."""
    return settings.acse_timeout + 2 * settings.dimse_timeout + 60


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_local_owners(owners: Sequence[str]) -> list[str]:
    """The claim owners that were processes of this host and are gone (restarted or dead)."""
    host, pid, _ = OWNER.split(":")
    dead = []
    for owner in owners:
        parts = owner.rsplit(":", 2)
        if len(parts) != 3 or parts[0] != host or owner == OWNER:
            continue
        if int(parts[1]) == int(pid) or not _alive(int(parts[1])):
            dead.append(owner)
    return dead


class CommitmentReporter:
    """Accepts requests and delivers their reports, now and after restarts."""

    def __init__(self, settings: Settings, archive: Archive, index: Index):
        self.settings = settings
        self.archive = archive
        self.index = index
        self.requests = Commitments(index)
        self.channel: ReportChannel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers: set[threading.Thread] = set()
        self._lock = threading.Lock()

    # --- the N-ACTION ---------------------------------------------------------------------

    def accept(self, calling_ae: str, action: CommitmentAction) -> CommitmentRecord:
        """Keep a checked request (J.3.2.1.3) before it is answered. A Transaction UID seen
        before fails every instance with 0x0131 Duplicate Transaction UID (J.3.3.1.2).
        Raises DicomError 0x0213 when the index cannot keep it."""
        try:
            result = None
            if self.requests.is_known(action.transaction_uid):
                log.warning("storage commitment from %s: Transaction UID %s was used before",
                            calling_ae, action.transaction_uid)
                result = [(c, i, int(CommitmentFailure.DUPLICATE_TRANSACTION_UID))
                          for c, i in action.references]
            return self.requests.add(action.transaction_uid, calling_ae, action.references,
                                     OWNER, time.time() + lease_seconds(self.settings), result)
        except IndexUnavailable as exc:
            log.error("storage commitment: %s", exc)
            raise DicomError(CommitmentStatus.RESOURCE_LIMITATION, "index unavailable") from exc

    def submit(self, record: CommitmentRecord, association: Any = None) -> None:
        """Check and report `record` in a thread of its own (first on `association`)."""
        worker = threading.Thread(target=self._run, args=(record, association), daemon=True,
                                  name=f"commitment-{record.id}")
        with self._lock:
            self._workers.add(worker)
        worker.start()

    def _run(self, record: CommitmentRecord, association: Any) -> None:
        try:
            self.process(record, association)
        finally:
            with self._lock:
                self._workers.discard(threading.current_thread())

    # --- the background loop ---------------------------------------------------------------

    def start(self, channel: ReportChannel) -> None:
        """Deliver pending reports from now on: those of dead local processes at once."""
        self.channel = channel
        try:
            released = self.requests.release_owners(
                dead_local_owners(self.requests.pending_owners()))
            if released:
                log.info("storage commitment: resuming %d pending report(s)", released)
        except IndexUnavailable as exc:
            log.error("storage commitment: %s", exc)
        self._thread = threading.Thread(target=self._loop, name="commitment-reports",
                                        daemon=True)
        self._thread.start()

    def drain(self, timeout: float = 10.0) -> None:
        """Wait up to `timeout` seconds for the reports in flight to be answered or given up."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for thread in workers:
            thread.join(max(0.0, deadline - time.monotonic()))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the loop and let reports in flight finish for `timeout` seconds (what is not
        delivered stays pending in the index for the next start)."""
        self._stop.set()
        started = time.monotonic()
        self.drain(timeout)
        if self._thread is not None:
            self._thread.join(max(0.0, timeout - (time.monotonic() - started)))
        self.index.release_connection()

    def _loop(self) -> None:
        poll = min(self.settings.commitment_retry_interval, 5.0)
        while not self._stop.wait(poll):
            try:
                due = self.requests.claim_due(OWNER, time.time() + lease_seconds(self.settings))
            except IndexUnavailable as exc:
                log.error("storage commitment: %s", exc)
                continue
            finally:
                self.index.end_operation()
            for record in due:
                if self._stop.is_set():
                    break
                self.process(record)

    # --- one request -----------------------------------------------------------------------

    def process(self, record: CommitmentRecord, association: Any = None) -> bool:
        """Check `record` (once), then deliver its report; True when delivered."""
        try:
            return self._process(record, association)
        except IndexUnavailable as exc:
            log.error("storage commitment %s: %s (retried later)", record.transaction_uid, exc)
        except Exception:  # a report thread must not die silently
            log.exception("storage commitment %s failed (retried later)", record.transaction_uid)
        finally:
            self.index.release_connection()
        return False

    def _process(self, record: CommitmentRecord, association: Any) -> bool:
        if record.result is None:
            outcomes = check_instances(self.archive, self.index, record.references)
            self.requests.save_result(record.id, [(o.sop_class_uid, o.sop_instance_uid,
                                                   o.failure) for o in outcomes])
        else:
            outcomes = [Outcome(*r) for r in record.result]
        event_type, information = event_information(record.transaction_uid, outcomes,
                                                    self.settings.ae_title)
        assert self.channel is not None, "start() names the channel"
        reasons = []
        if association is not None:
            reason = self.channel.on_association(association, event_type, information)
            if not reason:
                return self._delivered(record, outcomes, "the same association")
            reasons.append(f"same association: {reason}")
        reason = self.channel.to_requester(record.calling_ae, event_type, information)
        if not reason:
            return self._delivered(record, outcomes, "a new association")
        reasons.append(reason)
        self._undelivered(record, "; ".join(reasons))
        return False

    def _delivered(self, record: CommitmentRecord, outcomes: Sequence[Outcome],
                   how: str) -> bool:
        self.requests.reported(record.id)
        failed = sum(1 for o in outcomes if o.failure)
        log.info("storage commitment %s for %s reported on %s: %d committed, %d failed",
                 record.transaction_uid, record.calling_ae, how, len(outcomes) - failed, failed)
        return True

    def _undelivered(self, record: CommitmentRecord, reason: str) -> None:
        now = time.time()
        if now - record.received_at > self.settings.commitment_expiry:
            self.requests.expire(record.id, reason)
            log.error("storage commitment %s for %s expired undelivered: %s",
                      record.transaction_uid, record.calling_ae, reason)
            return
        delay = min(self.settings.commitment_retry_interval * 2 ** record.attempts,
                    max(_LONGEST_DELAY, self.settings.commitment_retry_interval))
        self.requests.retry_later(record.id, now + delay, reason)
        log.warning("storage commitment %s for %s not delivered (%s); next attempt in %.0f s",
                    record.transaction_uid, record.calling_ae, reason, delay)
