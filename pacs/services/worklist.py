"""The modality worklist use cases (PS3.4 K): keeping items (`pacs worklist add/list/remove`, and
the worklist folder mirrored on each query) and answering a worklist C-FIND.

Room: services/. Imports config, model/ (worklist, predicates, statuses), index/ (worklist
items) and services/store (column values); pydicom to read item files; no protocol.

The index is the one source of truth: every query reads the index. The worklist folder, when
configured, is a drop box the index follows: on each query (and each `pacs worklist list`) new
and changed `*.wl` files are read into the index, items of deleted files leave it, and a file
that is not a servable item is skipped with one log line per version of the file.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pacs.index.records import IndexUnavailable
from pacs.index.worklist import ItemWrite, WorklistItems, WorklistQuery, WorklistRecord
from pacs.model.predicates import MatchOptions
from pacs.model.status import DicomError, WorklistStatus
from pacs.model.worklist import (
    SPS_ATTRIBUTES,
    TOP_ATTRIBUTES,
    InvalidWorklistItem,
    WorklistRequest,
    build_worklist_response,
    check_item,
    parse_worklist_request,
    scheduled_step,
    step_key,
    worklist_constraints,
)
from pacs.services.context import Services
from pacs.services.store import column_values

log = logging.getLogger("pacs.worklist")

SUFFIX = ".wl"  # worklist files, as DCMTK's wlmscpfs names them
# Folder file -> the stamp (mtime, size) of its version already logged / found unservable.
_reported: dict[str, str] = {}
_invalid: dict[str, str] = {}
_reported_lock = threading.Lock()


def read_item(path: Path) -> Dataset:
    """A worklist item file (Part 10, or a bare data set) as a checked data set.
    Raises InvalidWorklistItem with the reason."""
    try:
        try:
            dataset = dcmread(path)
        except InvalidDicomError:
            dataset = dcmread(path, force=True)  # a bare data set, as dump2dcm can write
        check_item(dataset)
        json.dumps(dataset.to_json_dict(None, None))  # every value must be representable
    except InvalidWorklistItem:
        raise
    except Exception as exc:  # pydicom raises many types for what is not DICOM
        raise InvalidWorklistItem(f"not a readable DICOM data set: {exc}") from None
    return dataset


def item_write(dataset: Dataset, source: str = "", stamp: str = "") -> ItemWrite:
    """What the index keeps of a checked item: its step key, columns and DICOM JSON."""
    columns = {**column_values(dataset, TOP_ATTRIBUTES),
               **column_values(scheduled_step(dataset), SPS_ATTRIBUTES)}
    text = json.dumps(dataset.to_json_dict(None, None), sort_keys=True)
    return ItemWrite(step_key(dataset), source, stamp, text, columns)


def _stamp(entry: os.DirEntry[str]) -> str:
    info = entry.stat()
    return f"{info.st_mtime_ns}:{info.st_size}"


def _report_once(path: Path, stamp: str, message: str, *args: object) -> bool:
    """Log `message` once per version (stamp) of `path`; False when already logged."""
    with _reported_lock:
        if _reported.get(str(path)) == stamp:
            return False
        _reported[str(path)] = stamp
    log.warning(message, *args)
    return True


def _known_bad(path: Path, stamp: str) -> bool:
    with _reported_lock:
        return _invalid.get(str(path)) == stamp


def sync_folder(services: Services) -> None:
    """Bring the index's folder items in line with the worklist folder's `*.wl` files."""
    folder = services.settings.worklist_folder
    if folder is None:
        return
    try:
        files = {entry.name: _stamp(entry) for entry in os.scandir(folder)
                 if entry.name.endswith(SUFFIX) and entry.is_file()}
    except OSError as exc:
        _report_once(folder, "", "worklist folder %s cannot be read: %s", folder, exc)
        return
    items = WorklistItems(services.index)
    known = items.folder_stamps()
    stale = [name for name in known if name not in files]
    for name, stamp in sorted(files.items()):
        if known.get(name) == stamp:
            continue  # the usual case, kept cheap: no path object, no read
        path = folder / name
        if _known_bad(path, stamp):
            continue
        try:
            write = item_write(read_item(path), name, stamp)
        except InvalidWorklistItem as exc:
            with _reported_lock:
                _invalid[str(path)] = stamp  # not read again until the file changes
            _report_once(path, stamp, "worklist file %s skipped: %s", path, exc)
            stale += [name] if name in known else []
            continue
        if items.put(write) == "conflict":
            _report_once(path, stamp, "worklist file %s skipped: its step %s is already on "
                         "the worklist from elsewhere", path, write.step_key)
    items.remove_sources(stale)


@dataclass
class WorklistSearch:
    """One validated worklist request, ready to stream its matching items."""

    services: Services
    request: WorklistRequest
    query: WorklistQuery
    matches: int = 0
    cancelled: bool = False

    @property
    def pending_status(self) -> int:
        """0xFF00, or 0xFF01 when a key with a value was not matched on."""
        return int(self.request.pending_status)

    def responses(self, is_cancelled: Callable[[], bool] = lambda: False) -> Iterator[Dataset]:
        """One response identifier per matching item; stops when `is_cancelled` says so."""
        try:
            for text in self.query.rows():
                if is_cancelled():
                    self.cancelled = True
                    return
                yield build_worklist_response(self.request, Dataset.from_json(text))
                self.matches += 1
        except IndexUnavailable as exc:
            log.error("worklist C-FIND: %s", exc)
            raise DicomError(WorklistStatus.OUT_OF_RESOURCES, "index unavailable") from exc


def start_worklist_search(services: Services, identifier: Dataset) -> WorklistSearch:
    """Validate a worklist identifier, follow the folder, build the query, check the cap.

    Raises DicomError: 0xA900 for an invalid identifier, 0xA700 when the index is unavailable
    or more items match than `query.max_results`.
    """
    request = parse_worklist_request(identifier)
    options = MatchOptions(pn_case_insensitive=services.settings.pn_case_insensitive)
    query = WorklistQuery(worklist_constraints(request, options))
    cap = services.settings.max_find_results
    try:
        sync_folder(services)
        over_cap = query.count(cap + 1) > cap
    except IndexUnavailable as exc:
        log.error("worklist C-FIND: %s", exc)
        raise DicomError(WorklistStatus.OUT_OF_RESOURCES, "index unavailable") from exc
    if over_cap:
        raise DicomError(WorklistStatus.OUT_OF_RESOURCES,
                         f"more than {cap} worklist items match; narrow the query")
    return WorklistSearch(services, request, query)


# --- the operator's commands -----------------------------------------------------------------

@dataclass
class AddSummary:
    """What `pacs worklist add` did with each file."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def add_items(services: Services, paths: Sequence[Path]) -> AddSummary:
    """Add (or replace, by step key) the items of these files to the worklist."""
    summary = AddSummary()
    items = WorklistItems(services.index)
    for path in paths:
        try:
            write = item_write(read_item(path))
        except InvalidWorklistItem as exc:
            summary.rejected.append((str(path), str(exc)))
            continue
        outcome = items.put(write)
        if outcome == "conflict":
            summary.rejected.append((str(path), f"step {write.step_key} comes from the "
                                                "worklist folder: change its file there"))
        else:
            (summary.added if outcome == "added" else summary.replaced).append(str(path))
            log.info("worklist item %s %s from %s", write.step_key, outcome, path)
    return summary


def list_items(services: Services) -> list[WorklistRecord]:
    """Every worklist item, the folder followed first."""
    sync_folder(services)
    return WorklistItems(services.index).list()


def remove_items(services: Services, item_ids: Sequence[int]) -> list[tuple[int, str]]:
    """Remove items added by `pacs worklist add`; (id, reason) of those left in place."""
    items = WorklistItems(services.index)
    refused: list[tuple[int, str]] = []
    removable = []
    for item_id in item_ids:
        record = items.get(item_id)
        if record is None:
            refused.append((item_id, "no such item"))
        elif record.source:
            refused.append((item_id, f"comes from the worklist folder file {record.source}: "
                                     "delete the file"))
        else:
            removable.append(item_id)
    items.remove(removable)
    for item_id in removable:
        log.info("worklist item %d removed", item_id)
    return refused
