"""C-FIND identifiers: validating a request (PS3.4 C.4.1.1.3.1, C.4.1.2); model/responses.py
builds the response of one match (C.4.1.1.3.2).

Room: model/. Imports model/ (datasets, levels, matching, status) and pydicom; no database. The
request identifier is never modified: it is read from a shallow copy (`_reading_copy`), with
values decoded by pydicom using the request's own Specific Character Set (ISO 2022 escapes
included).

Keys outside the hierarchy (C.4.1.2.1): with `strict` they are refused (0xA900). Otherwise,
as dcmqrscp and Orthanc answer them: keys of the levels above are read as relational
queries read them (C.4.1.3.2: matched when they hold a value, returned with the ancestor's
value; a Unique Key above may be absent, empty or a list), and keys of the levels below are
kept apart in `below` (matched against descendants, returned zero length, 0xFF01).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import Tag

from pacs.model.datasets import dataset_of
from pacs.model.levels import (
    DERIVED,
    UNIQUE,
    InformationModel,
    Key,
    find_key,
    unique_key,
)
from pacs.model.predicates import QueryValue
from pacs.model.status import DicomError, FindStatus
from pacs.model.value_matching import (
    WILDCARD_VRS,
    element_texts,
    normal_form,
    parse_range,
)

QUERY_RETRIEVE_LEVEL = 0x00080052
SPECIFIC_CHARACTER_SET = 0x00080005
QUERY_RETRIEVE_VIEW = 0x00080053
TIMEZONE_OFFSET = 0x00080201
RETRIEVE_AE_TITLE = 0x00080054
INSTANCE_AVAILABILITY = 0x00080056
# Not keys: they say how to read the request, or the SCP always answers them (C.4.1.1.3).
_NOT_KEYS = {QUERY_RETRIEVE_LEVEL, SPECIFIC_CHARACTER_SET, QUERY_RETRIEVE_VIEW, TIMEZONE_OFFSET,
             RETRIEVE_AE_TITLE, INSTANCE_AVAILABILITY}
_CONVERSION_ERRORS = (ValueError, TypeError, LookupError, OverflowError)


@dataclass(frozen=True)
class FindRequest:
    """A validated C-FIND request: what to match, what to return."""

    model: InformationModel
    level: str
    values: tuple[QueryValue, ...]  # supported keys, matched and returned
    unsupported: tuple[tuple[int, str], ...] = ()  # (tag, VR): returned zero length
    unmatched: bool = False  # a value given for a key we return but do not match on
    ignored_private: bool = False  # private keys are not returned (C.4.1.1.3.2 note 4)
    timezone: str = ""  # the request's Timezone Offset From UTC
    want_timezone: bool = False
    want_availability: bool = False
    below: tuple[QueryValue, ...] = ()  # keys of levels below, with values: descendants match
    lenient: tuple[str, ...] = ()  # keywords only a non-strict hierarchy accepts (for the log)
    encoding: tuple[bool, bool] | None = None  # (implicit VR, little endian) it arrived in

    @property
    def pending_status(self) -> FindStatus:
        """0xFF01 when a requested key is not supported for matching, else 0xFF00."""
        if self.unsupported or self.ignored_private or self.unmatched:
            return FindStatus.PENDING_OPTIONAL_KEYS_UNSUPPORTED
        return FindStatus.PENDING


def _refuse(tag: int, comment: str) -> DicomError:
    return DicomError(FindStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS, comment, tag)


def _name(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _read(dataset: Dataset, tag: int) -> tuple[str, tuple[str, ...], list[Dataset] | None]:
    """(VR, text values, sequence items) of one element of the (copied) request."""
    raw = dataset.get_item(tag)
    try:
        element = dataset[tag]
    except _CONVERSION_ERRORS:  # a value pydicom cannot convert, e.g. "1-5" as IS
        value = raw.value if isinstance(raw.value, bytes) else b""
        text = value.decode("latin-1").strip("\x00 ")
        return str(raw.VR or "UN"), tuple(text.split("\\")) if text else (), None
    if element.VR == "SQ":
        return "SQ", (), list(element.value or [])
    return str(element.VR), element_texts(element.value), None


def _check_values(key: Key, values: Sequence[str]) -> None:
    """Values the key's matching types can read (PS3.4 C.2.2.2); ValueError otherwise."""
    if len(values) > 1 and key.vr != "UI" and not key.multi:
        raise ValueError("holds several values (only UIDs may be listed)")
    for value in values:
        if key.computed and DERIVED[key.keyword].column is None:
            int(value)
        elif key.vr in ("DA", "TM", "DT"):
            parse_range(key.vr, value) if "-" in value else normal_form(key.vr, value)
        elif key.vr == "UI" and ("*" in value or "?" in value):
            raise ValueError("UIDs take no wildcards")


def _is_single_value(key: Key, values: Sequence[str]) -> bool:
    value = values[0] if len(values) == 1 else ""
    wildcard = key.vr in WILDCARD_VRS and ("*" in value or "?" in value)
    return bool(value) and not wildcard


def parse_request(identifier: Dataset, model: InformationModel, relational: bool = False,
                  strict: bool = False) -> FindRequest:
    """Validate a request identifier against the model's levels and keys.

    Raises DicomError 0xA900 with Offending Element for a missing or unknown level, or a
    value no matching type can read. With `strict` also for a key below the level and,
    without relational queries, anything but a single-valued Unique Key at the levels above
    (C.4.1.2.1); without `strict` those are answered (see the module docstring).
    """
    request = _reading_copy(identifier)  # never touch the caller's identifier
    try:
        level_values = _read(request, QUERY_RETRIEVE_LEVEL)[1] \
            if QUERY_RETRIEVE_LEVEL in request else ()
    except _CONVERSION_ERRORS:
        level_values = ()
    if not level_values:
        raise _refuse(QUERY_RETRIEVE_LEVEL, "Query/Retrieve Level is missing")
    level = level_values[0]
    if len(level_values) != 1 or not model.has_level(level):
        raise _refuse(QUERY_RETRIEVE_LEVEL, f"{model.name} has no level {level!r}")
    depth = model.levels.index(level)
    values: list[QueryValue] = []
    below: list[QueryValue] = []
    lenient: list[str] = []
    unsupported: list[tuple[int, str]] = []
    ignored_private = unmatched = False
    timezone = ""
    for raw in list(request.elements()):
        tag = Tag(raw.tag)
        if tag.element == 0 or tag.group < 0x0008:
            continue  # group lengths; command elements never belong in an identifier
        if tag == TIMEZONE_OFFSET:
            timezone = "".join(_read(request, tag)[1])
            continue
        if tag in _NOT_KEYS:
            continue
        if tag.is_private:
            ignored_private = True
            continue
        key = find_key(model, tag)
        try:
            vr, texts, items = _read(request, tag)
        except _CONVERSION_ERRORS as exc:
            raise _refuse(tag, f"{_name(tag)} cannot be decoded: {exc}") from None
        if key is None:
            unsupported.append((int(tag), vr))
            continue
        key_depth = model.levels.index(key.level)
        if key_depth > depth and strict:
            raise _refuse(tag, f"{_name(tag)} is a {key.level} key, below {level}")
        if key_depth < depth and not relational and (
                key.kind != UNIQUE or not _is_single_value(key, texts)):
            if strict and key.kind != UNIQUE:
                raise _refuse(tag, f"{_name(tag)} is a {key.level} key, above {level}")
            if strict:
                raise _refuse(tag, f"{key.keyword} above {level} needs one value")
            lenient.append(key.keyword)
        if items is not None and len(items) > 1:
            raise _refuse(tag, f"{key.keyword}: a key holds one item at most")
        try:
            _check_values(key, texts)
        except ValueError as exc:
            raise _refuse(tag, f"{key.keyword} {exc}") from None
        item = items[0] if items else None
        if key_depth > depth:
            # No value of a lower level belongs to this entity: returned zero length
            # (0xFF01), and a value given selects the entities with such a descendant.
            lenient.append(key.keyword)
            unsupported.append((int(tag), vr))
            if key.matchable and (texts or _has_values(item)):
                below.append(QueryValue(key, texts, item))
            continue
        if not key.matchable:
            # C.2.2.1.3: existence supported, matching not: processed as zero length.
            unmatched = unmatched or bool(texts) or _has_values(item)
            texts, item = (), None
        values.append(QueryValue(key, texts, item))
    if not relational:
        given = {value.key.tag for value in values}
        for upper in model.levels_above(level):
            needed = unique_key(model, upper)
            if needed.tag in given:
                continue
            if strict:
                raise _refuse(needed.tag, f"{needed.keyword} above {level} is missing")
            lenient.append(needed.keyword)
    if timezone and not _valid_offset(timezone):
        raise _refuse(TIMEZONE_OFFSET, f"Timezone Offset From UTC {timezone!r} is invalid")
    return FindRequest(model, level, tuple(values), tuple(unsupported), unmatched,
                       ignored_private, timezone, TIMEZONE_OFFSET in request,
                       INSTANCE_AVAILABILITY in request, tuple(below), tuple(lenient),
                       _encoding(identifier))


def _reading_copy(identifier: Dataset) -> Dataset:
    """A copy to read the request from, leaving the caller's identifier as it was.

    Reading an element converts it in place (pydicom replaces a raw element with a decoded
    one in the data set's own dict), so the copy gets a dict of its own holding the same
    elements; raw elements are immutable, and a sequence is decoded from its bytes into new
    items. A deep copy cost ~0.15 ms of every C-FIND. Data sets built in memory (whose
    sequences hold items that may still be raw) are deep-copied as before.
    """
    if any(type(element) is not RawDataElement for element in identifier.values()):
        return copy.deepcopy(identifier)
    implicit, little = identifier.original_encoding
    return dataset_of(dict(identifier.items()),
                      (implicit, little, identifier.original_character_set))


def _encoding(identifier: Dataset) -> tuple[bool, bool] | None:
    """The transfer syntax a decoded identifier came in (None: built here, not received)."""
    implicit, little = identifier.original_encoding
    return None if implicit is None or little is None else (implicit, little)


def _has_values(item: Dataset | None) -> bool:
    """Whether a request item holds any non-empty key (at any depth)."""
    return item is not None and any(
        element.VR != "SQ" and element_texts(element.value) for element in item.iterall())


def _valid_offset(text: str) -> bool:
    return len(text) == 5 and text[0] in "+-" and text[1:].isdigit() \
        and int(text[1:3]) <= 14 and int(text[3:5]) < 60


# --- responses (model/responses.py builds them) -------------------------------------

def _has_non_ascii(dataset: Dataset) -> bool:
    for element in dataset.iterall():
        if element.VR != "SQ" and not all(text.isascii() for text in
                                          element_texts(element.value)):
            return True
    return False
