"""Performed procedure steps (MPPS) in the index: create, read, update without lost updates,
list; the instances each step lists; the state of the worklist items each step performs.

Room: index/. Imports peewee, index/schema, index/records and index/database. Takes and gives
plain records and DICOM JSON text; knows nothing of the rules of PS3.4 F.7 (model/mpps.py).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import peewee

from pacs.index.database import Index
from pacs.index.records import IndexUnavailable
from pacs.index.schema import Instance, PerformedStep, PerformedStepInstance, WorklistItem


@dataclass(frozen=True)
class StepRecord:
    """One performed procedure step as stored."""

    sop_instance_uid: str
    state: str
    calling_ae: str
    created_at: float
    updated_at: float
    version: int
    dataset: str  # DICOM JSON


@dataclass(frozen=True)
class StepWrite:
    """What a create or an update writes: the step and what it refers to."""

    state: str
    dataset: str
    listed: Sequence[tuple[str, str, str]]  # (series, SOP class, SOP instance) UIDs
    worklist_keys: Sequence[str]  # step keys of the worklist items it performs
    worklist_state: str  # the state those items take


def _record(row: PerformedStep) -> StepRecord:
    return StepRecord(row.sop_instance_uid, row.state, row.calling_ae, row.created_at,
                      row.updated_at, row.version, row.dataset)


class PerformedSteps:
    """The performed procedure steps of one index."""

    def __init__(self, index: Index):
        self.index = index

    def create(self, sop_instance_uid: str, calling_ae: str, write: StepWrite) -> bool:
        """Insert a new step; False when one with this SOP Instance UID exists already."""
        now = time.time()
        try:
            with self.index.write_transaction():
                if PerformedStep.select().where(
                        PerformedStep.sop_instance_uid == sop_instance_uid).exists():
                    return False
                row = PerformedStep.create(
                    sop_instance_uid=sop_instance_uid, state=write.state,
                    calling_ae=calling_ae, created_at=now, updated_at=now, version=1,
                    dataset=write.dataset)
                self._refer(row.id, write, now)
                return True
        except peewee.IntegrityError:
            return False  # created by another process between the check and the insert
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    def get(self, sop_instance_uid: str) -> StepRecord | None:
        """The step with this SOP Instance UID, or None."""
        try:
            row = PerformedStep.get_or_none(PerformedStep.sop_instance_uid == sop_instance_uid)
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc
        return _record(row) if row is not None else None

    def update(self, current: StepRecord, write: StepWrite) -> bool:
        """Replace the step read as `current`; False when it changed since (read it again)."""
        now = time.time()
        try:
            with self.index.write_transaction():
                changed = PerformedStep.update(
                    state=write.state, dataset=write.dataset, updated_at=now,
                    version=current.version + 1,
                ).where(
                    (PerformedStep.sop_instance_uid == current.sop_instance_uid)
                    & (PerformedStep.version == current.version)
                ).execute()
                if not changed:
                    return False
                step_id = PerformedStep.get(
                    PerformedStep.sop_instance_uid == current.sop_instance_uid).id
                PerformedStepInstance.delete().where(
                    PerformedStepInstance.step == step_id).execute()
                self._refer(step_id, write, now)
                return True
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index write failed: {exc}") from exc

    @staticmethod
    def _refer(step_id: int, write: StepWrite, now: float) -> None:
        rows = [{"step": step_id, "series_instance_uid": series, "sop_class_uid": sop_class,
                 "sop_instance_uid": instance} for series, sop_class, instance in write.listed]
        for start in range(0, len(rows), 200):
            PerformedStepInstance.insert_many(rows[start:start + 200]).execute()
        if write.worklist_keys:
            WorklistItem.update(state=write.worklist_state, updated_at=now).where(
                WorklistItem.step_key.in_(list(write.worklist_keys))).execute()

    def list(self, states: Iterable[str] = ()) -> list[StepRecord]:
        """Steps, oldest first; only those in `states` when given."""
        query = PerformedStep.select().order_by(PerformedStep.created_at, PerformedStep.id)
        if states:
            query = query.where(PerformedStep.state.in_(list(states)))
        try:
            return [_record(row) for row in query]
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc

    def listed_instances(self, sop_instance_uid: str) -> list[tuple[str, str, str, bool]]:
        """(series, SOP class, SOP instance, held in the archive) of each instance a step
        lists, in the order listed."""
        held = Instance.select(Instance.id).where(
            Instance.sop_instance_uid == PerformedStepInstance.sop_instance_uid)
        query = (PerformedStepInstance
                 .select(PerformedStepInstance.series_instance_uid,
                         PerformedStepInstance.sop_class_uid,
                         PerformedStepInstance.sop_instance_uid,
                         peewee.fn.EXISTS(held).alias("held"))
                 .join(PerformedStep)
                 .where(PerformedStep.sop_instance_uid == sop_instance_uid)
                 .order_by(PerformedStepInstance.id)
                 .tuples())
        try:
            return [(series, cls, inst, bool(h)) for series, cls, inst, h in query]
        except peewee.PeeweeException as exc:
            raise IndexUnavailable(f"index read failed: {exc}") from exc
