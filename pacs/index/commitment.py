"""Storage commitment requests in the index: kept from the N-ACTION until their report is
delivered, so a restart does not lose one. Claims keep two processes from reporting at once.

Room: index/. Imports peewee, index/ (schema, records, database). A request is claimed by
moving its `next_attempt_at` past its work (a lease) under the claimant's `owner` token;
a process that dies leaves a lease that expires, or that a restart on its host takes back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import peewee

from pacs.index.database import Index
from pacs.index.records import IndexUnavailable
from pacs.index.schema import CommitmentRequest

PENDING, REPORTED, EXPIRED = "pending", "reported", "expired"


@dataclass(frozen=True)
class CommitmentRecord:
    """One storage commitment request as stored."""

    id: int
    transaction_uid: str
    calling_ae: str
    received_at: float
    state: str
    references: tuple[tuple[str, str], ...]
    result: tuple[tuple[str, str, int], ...] | None  # None until checked
    attempts: int
    next_attempt_at: float
    owner: str
    last_error: str


def _record(row: CommitmentRequest) -> CommitmentRecord:
    result = tuple(tuple(r) for r in json.loads(row.result)) if row.result else None
    return CommitmentRecord(row.id, row.transaction_uid, row.calling_ae, row.received_at,
                            row.state, tuple(tuple(r) for r in json.loads(row.references)),
                            result, row.attempts, row.next_attempt_at, row.owner,
                            row.last_error)  # type: ignore[arg-type]


def _failed(action: str, exc: Exception) -> IndexUnavailable:
    return IndexUnavailable(f"index {action} failed: {exc}")


class Commitments:
    """The storage commitment requests of one index."""

    def __init__(self, index: Index):
        self.index = index

    def add(self, transaction_uid: str, calling_ae: str,
            references: Sequence[tuple[str, str]], owner: str, lease_until: float,
            result: Sequence[tuple[str, str, int]] | None = None) -> CommitmentRecord:
        """Keep a new request, claimed by `owner` until `lease_until`."""
        try:
            with self.index.write_transaction():
                row = CommitmentRequest.create(
                    transaction_uid=transaction_uid, calling_ae=calling_ae,
                    received_at=time.time(), state=PENDING,
                    references=json.dumps([list(r) for r in references]),
                    result=json.dumps([list(r) for r in result]) if result is not None else "",
                    next_attempt_at=lease_until, owner=owner)
            return _record(row)
        except peewee.PeeweeException as exc:
            raise _failed("write", exc) from exc

    def is_known(self, transaction_uid: str) -> bool:
        """Whether a request with this Transaction UID was ever received."""
        try:
            return bool(CommitmentRequest.select().where(
                CommitmentRequest.transaction_uid == transaction_uid).exists())
        except peewee.PeeweeException as exc:
            raise _failed("read", exc) from exc

    def _set(self, request_id: int, **values: object) -> None:
        try:
            with self.index.write_transaction():
                CommitmentRequest.update(values).where(
                    CommitmentRequest.id == request_id).execute()
        except peewee.PeeweeException as exc:
            raise _failed("write", exc) from exc

    def save_result(self, request_id: int, result: Sequence[tuple[str, str, int]]) -> None:
        """Keep the checked result, so every later attempt reports the same."""
        self._set(request_id, result=json.dumps([list(r) for r in result]))

    def reported(self, request_id: int) -> None:
        """The report was delivered: the transaction is over (J.3.3.1.2)."""
        self._set(request_id, state=REPORTED, reported_at=time.time(), owner="",
                  attempts=CommitmentRequest.attempts + 1, last_error="")

    def retry_later(self, request_id: int, at: float, error: str) -> None:
        """Delivery failed: try again at `at` (UNIX seconds)."""
        self._set(request_id, next_attempt_at=at, owner="", last_error=error[:500],
                  attempts=CommitmentRequest.attempts + 1)

    def expire(self, request_id: int, error: str) -> None:
        """Give up: the report could not be delivered in time."""
        self._set(request_id, state=EXPIRED, owner="", last_error=error[:500])

    def claim_due(self, owner: str, lease_until: float, limit: int = 20) -> list[CommitmentRecord]:
        """Pending requests due now, each claimed for `owner` until `lease_until` (a request
        another process claims first is skipped)."""
        now = time.time()
        try:
            due = list(CommitmentRequest.select()
                       .where((CommitmentRequest.state == PENDING)
                              & (CommitmentRequest.next_attempt_at <= now))
                       .order_by(CommitmentRequest.next_attempt_at).limit(limit))
            claimed = []
            for row in due:
                with self.index.write_transaction():
                    won = CommitmentRequest.update(next_attempt_at=lease_until, owner=owner) \
                        .where((CommitmentRequest.id == row.id)
                               & (CommitmentRequest.state == PENDING)
                               & (CommitmentRequest.next_attempt_at == row.next_attempt_at)) \
                        .execute()
                if won:
                    claimed.append(_record(CommitmentRequest.get_by_id(row.id)))
            return claimed
        except peewee.PeeweeException as exc:
            raise _failed("claim", exc) from exc

    def release_owners(self, owners: Iterable[str]) -> int:
        """Make the pending requests claimed by these (dead) owners due now."""
        owners = list(owners)
        if not owners:
            return 0
        try:
            with self.index.write_transaction():
                return int(CommitmentRequest.update(next_attempt_at=time.time(), owner="")
                           .where((CommitmentRequest.state == PENDING)
                                  & CommitmentRequest.owner.in_(owners)).execute())
        except peewee.PeeweeException as exc:
            raise _failed("write", exc) from exc

    def pending_owners(self) -> list[str]:
        """The owner tokens of pending requests under claim."""
        try:
            query = CommitmentRequest.select(CommitmentRequest.owner).distinct().where(
                (CommitmentRequest.state == PENDING) & (CommitmentRequest.owner != ""))
            return [row.owner for row in query]
        except peewee.PeeweeException as exc:
            raise _failed("read", exc) from exc

    def list(self, states: Iterable[str] = ()) -> list[CommitmentRecord]:
        """Requests, oldest first; only those in `states` when given."""
        query = CommitmentRequest.select().order_by(CommitmentRequest.id)
        if states:
            query = query.where(CommitmentRequest.state.in_(list(states)))
        try:
            return [_record(row) for row in query]
        except peewee.PeeweeException as exc:
            raise _failed("read", exc) from exc
