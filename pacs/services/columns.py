"""The index's text form of a data set's attributes, from pydicom elements or raw bytes.

Room: services/. Imports archive/encoding (raw elements, header reading), model/dictionary,
model/values, index/records and pydicom; no protocol. `element_text` is the text form of one
decoded element; `IndexHeader` holds that text for every attribute the index keeps. Ingest
builds it from the raw bytes its structural walk collected (`from_raw`), which is what
pydicom's decoding would give, character for character, for the values that need no
conversion (ASCII text, plain numbers, US); anything else (a sequence, another character
set, an odd number) is decoded by pydicom as before, and so is a whole data set whose SOP or
study/series UIDs are multi-valued or that is deflated (`from_dataset`).
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import BinaryIO

import pydicom.config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from pacs.archive.encoding import (
    EXPLICIT_BIG,
    FileLayout,
    MalformedDataset,
    RawElements,
    check_structure,
    read_header,
    read_index_elements,
    read_layout,
    uid_text,
)
from pacs.archive.files import StoredFile
from pacs.index.records import IndexEntry
from pacs.model.dictionary import (
    IMAGE,
    PATIENT,
    SERIES,
    STORED_ATTRIBUTES,
    STUDY,
    StoredAttribute,
    stored_attributes,
)
from pacs.model.values import fold_name, normalize_datetime, normalize_time

INDEX_TAGS: tuple[int, ...] = tuple(a.tag for a in STORED_ATTRIBUTES.values()) + (
    0x00080016,  # SOP Class UID
    0x00080018,  # SOP Instance UID
)
TIMEZONE_TAG = 0x00080201
UID_TAGS = {"SOPClassUID": 0x00080016, "SOPInstanceUID": 0x00080018,
            "StudyInstanceUID": 0x0020000D, "SeriesInstanceUID": 0x0020000E}
_DICTIONARY_VR = {a.tag: a.vr for a in STORED_ATTRIBUTES.values()} | {
    0x00080016: "UI", 0x00080018: "UI"}
_LEVEL_ATTRIBUTES = {level: stored_attributes(level) for level in (PATIENT, STUDY, SERIES, IMAGE)}

# How pydicom turns each text VR's bytes into the values element_text joins (PS3.5 6.2).
_WHOLE_RSTRIP = {"CS", "AS", "DA", "TM", "DT", "LT", "ST", "UT"}
_PART_RSTRIP = {"LO", "SH", "UC"}
_IS_ITEM = re.compile(r"[+-]?[0-9]{1,12}\Z")
_DS_ITEM = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")


def element_text(element: DataElement | None) -> str:
    """The index's text form of an element: multi-values joined by '\\', SQ as DICOM JSON."""
    if element is None or element.value is None:
        return ""
    if element.VR == "SQ":
        items = list(element.value)
        return json.dumps([item.to_json_dict() for item in items]) if items else ""
    value = element.value
    if isinstance(value, MultiValue | list | tuple):
        text = "\\".join("" if v is None else str(v) for v in value)
    elif isinstance(value, bytes):
        text = value.decode("ascii", "replace")
    else:
        text = str(value)
    return text.rstrip("\x00 ")


def _raw_text(vr: str, value: bytes, little: bool) -> str | None:
    """What `element_text` gives for this raw value once pydicom decoded it, or None when
    only pydicom can tell (non-ASCII text, escape sequences, numbers in an odd form)."""
    if not value:
        return ""
    if vr == "US":
        if len(value) % 2:
            return None
        numbers = struct.unpack(("<" if little else ">") + "H" * (len(value) // 2), value)
        return "\\".join(map(str, numbers))
    if not value.isascii() or b"\x1b" in value:
        return None
    text = value.decode("ascii")
    if vr in _WHOLE_RSTRIP:
        return text.rstrip("\x00 ")
    if vr == "UI":  # pydicom's UID strips each value at both ends
        return "\\".join(part.strip() for part in text.rstrip("\x00 ").split("\\")).rstrip(
            "\x00 ")
    if vr in _PART_RSTRIP:
        return "\\".join(part.rstrip("\x00 ") for part in text.split("\\")).rstrip("\x00 ")
    if vr == "PN":
        names = []
        for name in text.rstrip("\x00 ").split("\\"):
            groups = name.split("=")
            while groups and not groups[-1]:
                groups.pop()  # pydicom drops empty trailing component groups
            names.append("=".join(groups))
        return "\\".join(names).rstrip("\x00 ")
    if vr == "IS" or vr == "DS":
        items = text.rstrip("\x00 ").split("\\")
        pattern = _IS_ITEM if vr == "IS" else _DS_ITEM
        # pydicom keeps an IS or DS as written only up to 16 characters (PS3.5 6.2).
        if not all(len(item) <= 16 and pattern.match(item) for item in items):
            return None
        return "\\".join(items)
    return None


def _fast_path_applies() -> bool:
    """Whether pydicom's settings leave values as the text `_raw_text` emulates."""
    config = pydicom.config
    return not (config.datetime_conversion or config.use_DS_numpy or config.use_IS_numpy
                or config.use_DS_decimal or config.settings.reading_validation_mode
                == config.RAISE)


@dataclass(frozen=True)
class IndexHeader:
    """The text of each index attribute a data set holds (absent ones are missing)."""

    texts: dict[int, str]
    timezone: str  # Timezone Offset From UTC as column_values reads it
    uids: dict[str, str]  # SOP Class/Instance, Study/Series Instance UIDs as uid_text gives them

    @classmethod
    def from_dataset(cls, dataset: Dataset) -> IndexHeader:
        """From a decoded header (`read_header`)."""
        texts = {tag: element_text(dataset.get(tag)) for tag in INDEX_TAGS if tag in dataset}
        uids = {keyword: uid_text(dataset.get(keyword, "")) for keyword in UID_TAGS}
        return cls(texts, str(dataset.get("TimezoneOffsetFromUTC", "") or ""), uids)

    @classmethod
    def from_raw(cls, raw: RawElements, little: bool, handle: BinaryIO) -> IndexHeader:
        """From the raw elements `read_index_elements` collected; what they cannot say is
        decoded by pydicom from `handle` (the same file, still open)."""
        if not _fast_path_applies():
            return cls.from_dataset(read_header(handle, INDEX_TAGS))
        texts: dict[int, str] = {}
        undecided: list[int] = []
        for tag, (vr, value) in raw.items():
            if tag not in _DICTIONARY_VR:
                continue  # Specific Character Set: only pydicom's decoding needs it
            text = None
            if value is not None and vr in ("", _DICTIONARY_VR[tag]):
                text = _raw_text(_DICTIONARY_VR[tag], value, little)
            if text is None:
                undecided.append(tag)
            else:
                texts[tag] = text
        if any("\\" in texts.get(tag, "") for tag in UID_TAGS.values()):
            return cls.from_dataset(read_header(handle, INDEX_TAGS))  # refused; pydicom's words
        if undecided:
            dataset = read_header(handle, undecided)
            texts.update({tag: element_text(dataset.get(tag)) for tag in undecided})
        timezone = texts.get(TIMEZONE_TAG, "")
        if "\\" in timezone:
            timezone = str(MultiValue(str, timezone.split("\\")))
        uids = {keyword: texts.get(tag, "").strip("\x00 ") for keyword, tag in UID_TAGS.items()}
        return cls(texts, timezone, uids)

    def uid(self, keyword: str) -> str:
        """The text of a UID attribute as `uid_text` gives it ('' when absent)."""
        return self.uids[keyword]

    def columns(self, attributes: Iterable[StoredAttribute]) -> dict[str, str]:
        """The columns (with their folded and normalized forms) of `attributes`."""
        return _columns(self.texts.get, self.timezone, attributes)

    def entry(self, transfer_syntax_uid: str, stored: StoredFile, source_ae: str) -> IndexEntry:
        """What the index keeps of the stored file this header was read from."""
        return IndexEntry(
            patient=self.columns(_LEVEL_ATTRIBUTES[PATIENT]),
            study=self.columns(_LEVEL_ATTRIBUTES[STUDY]),
            series=self.columns(_LEVEL_ATTRIBUTES[SERIES]),
            instance=self.columns(_LEVEL_ATTRIBUTES[IMAGE]),
            transfer_syntax_uid=transfer_syntax_uid,
            file_path=stored.relative_path,
            file_size=stored.size,
            file_sha256=stored.sha256,
            source_ae=source_ae,
        )


_WANTED = frozenset(INDEX_TAGS)


def _index_elements_in(head: bytes, handle: BinaryIO) -> tuple[FileLayout, RawElements] | None:
    """The layout and index elements read from `head`, the first bytes of the file open in
    `handle`; None when the walk needs more of the file than `head` holds."""
    in_memory = io.BytesIO(head)
    try:
        layout = read_layout(in_memory, os.fstat(handle.fileno()).st_size)
        raw = read_index_elements(in_memory, layout, _WANTED)
    except MalformedDataset:
        return None  # perhaps only cut off by the end of `head`: the file decides
    return None if raw is None else (layout, raw)


def read_index_header(handle: BinaryIO, head: bytes = b"") -> tuple[FileLayout, IndexHeader]:
    """Check the structure of the Part 10 file open in `handle` and read what the index keeps
    of it, in one walk of its elements; MalformedDataset when it is not whole. `head`, the
    file's first bytes when its receiver kept them, spares reading them again."""
    if head and (read := _index_elements_in(head, handle)) is not None:
        layout, raw = read
        return layout, IndexHeader.from_raw(raw, layout.transfer_syntax != EXPLICIT_BIG, handle)
    layout = read_layout(handle)
    raw = read_index_elements(handle, layout, _WANTED)
    if raw is None:  # deflated: only pydicom can read it
        check_structure(handle, layout)
        return layout, IndexHeader.from_dataset(read_header(handle, INDEX_TAGS))
    little = layout.transfer_syntax != EXPLICIT_BIG
    return layout, IndexHeader.from_raw(raw, little, handle)


def _columns(text_of: object, timezone: str, attributes: Iterable[StoredAttribute]
             ) -> dict[str, str]:
    columns: dict[str, str] = {}
    for attribute in attributes:
        text = text_of(attribute.tag) or ""  # type: ignore[operator]
        columns[attribute.column] = text
        if attribute.folded_column:
            columns[attribute.folded_column] = fold_name(text)
        if attribute.normalized_column:
            first = text.split("\\")[0]
            columns[attribute.normalized_column] = (
                normalize_time(first) if attribute.vr == "TM"
                else normalize_datetime(first, timezone)
            )
    return columns


def column_values(dataset: Dataset, attributes: Iterable[StoredAttribute]) -> dict[str, str]:
    """The columns (with their folded and normalized forms) of `attributes` in `dataset`."""
    timezone = str(dataset.get("TimezoneOffsetFromUTC", "") or "")
    return _columns(lambda tag: element_text(dataset.get(tag)), timezone, attributes)


def index_entry(dataset: Dataset, transfer_syntax_uid: str, stored: StoredFile,
                source_ae: str, received_at: datetime | None = None) -> IndexEntry:
    """What the index keeps of a stored file: its columns at every level and the file."""
    entry = IndexEntry(
        patient=column_values(dataset, stored_attributes(PATIENT)),
        study=column_values(dataset, stored_attributes(STUDY)),
        series=column_values(dataset, stored_attributes(SERIES)),
        instance=column_values(dataset, stored_attributes(IMAGE)),
        transfer_syntax_uid=transfer_syntax_uid,
        file_path=stored.relative_path,
        file_size=stored.size,
        file_sha256=stored.sha256,
        source_ae=source_ae,
    )
    if received_at is not None:
        entry.received_at = received_at
    return entry
