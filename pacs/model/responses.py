"""C-FIND response identifiers (PS3.4 C.4.1.1.3.2): the requested keys with one match's
values, the Unique Keys of the levels above, Query/Retrieve Level and Retrieve AE Title.

Room: model/. Imports model/ (datasets, identifier, levels, value_matching) and pydicom; no
database.
A `ResponseBuilder` does the per-request work once (which elements, their VRs, the elements
every response shares) and writes each match's text values as raw, already encoded elements:
pydicom then copies their bytes when it encodes the response instead of converting each
value twice (text -> Python value -> bytes). The bytes are those pydicom writes for the same
values; values its writers treat specially (sequences, binary VRs, non-Latin-1 text in a VR
written in the default repertoire, number strings it cannot read) take pydicom's own path.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from pydicom.charset import convert_encodings, default_encoding
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag
from pydicom.valuerep import DS, IS

from pacs.model.datasets import dataset_of
from pacs.model.identifier import FindRequest, _has_non_ascii
from pacs.model.levels import Key, unique_key
from pacs.model.value_matching import item_matches, load_items

_CONVERSION_ERRORS = (ValueError, TypeError, LookupError, OverflowError)
# VRs pydicom writes in its default repertoire whatever the Specific Character Set says.
_DEFAULT_REPERTOIRE = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI", "UR"})
# VRs written in the Specific Character Set (ISO_IR 192 here whenever a value is not ASCII).
_CHARACTER_SET = frozenset({"LO", "LT", "PN", "SH", "ST", "UC", "UT"})
_NUMBER_STRINGS = {"IS": IS, "DS": DS}
_SINGLE_TEXT = frozenset({"LT", "ST", "UT", "UR"})  # a backslash is text, not a delimiter
UTF8 = "ISO_IR 192"
_UTF8_ENCODINGS = convert_encodings(UTF8)
_SPECIFIC_CHARACTER_SET = BaseTag(0x00080005)
_QUERY_RETRIEVE_LEVEL = BaseTag(0x00080052)
_RETRIEVE_AE_TITLE = BaseTag(0x00080054)
_INSTANCE_AVAILABILITY = BaseTag(0x00080056)
_TIMEZONE_OFFSET = BaseTag(0x00080201)
# How one element of a response is written: raw in the default repertoire, raw in the
# character set, raw after pydicom has read the number string, or by pydicom.
_LATIN, _TEXT, _NUMBER, _PYDICOM = range(4)


def _element_value(vr: str, text: str) -> object:
    if text == "":
        return None
    parts = [text] if vr in _SINGLE_TEXT else text.split("\\")
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        parts = [int(part) for part in parts]  # type: ignore[misc]
    elif vr in ("FL", "FD"):
        parts = [float(part) for part in parts]  # type: ignore[misc]
    return parts if len(parts) > 1 else parts[0]


def pydicom_element(tag: int, vr: str, text: str) -> DataElement:
    """The element pydicom makes of a stored text value; a value its VR cannot hold is
    answered unknown (zero length)."""
    try:
        return DataElement(tag, vr, _element_value(vr, text))
    except _CONVERSION_ERRORS:
        return DataElement(tag, vr, None)


def _raw(tag: BaseTag, vr: str, data: bytes) -> RawDataElement:
    """An encoded value padded to even length as pydicom pads it (UI with NUL, else space)."""
    if len(data) % 2:
        data += b"\x00" if vr == "UI" else b" "
    return RawDataElement(tag, vr, len(data), data, 0, False, True)


_HAS_SPACE = re.compile(r"\s")


def _mode(vr: str) -> int:
    if vr in _DEFAULT_REPERTOIRE:
        return _LATIN
    if vr in _CHARACTER_SET:
        return _TEXT
    if vr in _NUMBER_STRINGS:
        return _NUMBER
    return _PYDICOM


# (VR, text) -> whether pydicom reads every value of the number string: counts repeat (the
# number of instances of a series), and pydicom's IS/DS constructors cost ~5 us per value.
_READABLE_NUMBERS: dict[tuple[str, str], bool] = {}


def _readable_number(vr: str, text: str) -> bool:
    key = (vr, text)
    readable = _READABLE_NUMBERS.get(key)
    if readable is None:
        try:
            for part in text.split("\\"):
                _NUMBER_STRINGS[vr](part)
            readable = True
        except _CONVERSION_ERRORS:
            readable = False
        if len(_READABLE_NUMBERS) >= 4096:
            _READABLE_NUMBERS.clear()
        _READABLE_NUMBERS[key] = readable
    return readable


def encode_text(tag: int, vr: str, text: str) -> RawDataElement | DataElement:
    """One stored text value as a response element: raw bytes where they are certain to be
    pydicom's (text VRs in UTF-8, which a non-ASCII response declares), else pydicom's own."""
    tag = BaseTag(tag)
    mode = _mode(vr)
    if mode == _TEXT:
        return _raw(tag, vr, text.encode("utf-8"))
    # pydicom strips the whitespace around each UID value: such a text is left to it.
    if mode == _LATIN and text.isascii() and not (vr == "UI" and _HAS_SPACE.search(text)):
        return _raw(tag, vr, text.encode("ascii"))
    if mode == _NUMBER and text.isascii():
        if not _readable_number(vr, text):
            return DataElement(tag, vr, None)
        return _raw(tag, vr, text.encode("ascii"))
    return pydicom_element(tag, vr, text)


def select_items(query: Dataset | None, stored: list[Dataset],
                 case_insensitive: bool) -> list[Dataset]:
    """C.2.2.2.6: the matching items, each with only the requested attributes; the whole
    sequence when the request item is empty (or absent)."""
    if query is None or len(query) == 0:
        return stored
    selected = []
    for item in stored:
        if not item_matches(query, item, case_insensitive):
            continue
        answer = Dataset()
        for element in query:
            found = item.get(element.tag)
            if element.VR == "SQ":
                nested = list(found.value) if found is not None and found.VR == "SQ" \
                    and found.value else []
                inner = element.value[0] if element.value else None
                answer.add_new(element.tag, "SQ",
                               DicomSequence(select_items(inner, nested, case_insensitive)))
            elif found is not None:
                answer.add(copy.deepcopy(found))
            else:
                answer.add_new(element.tag, element.VR, None)
        selected.append(answer)
    return selected


class ResponseBuilder:
    """The response identifiers of one validated request, one per match (a row of text
    values by keyword, as the index reads them)."""

    def __init__(self, request: FindRequest, retrieve_ae_title: str,
                 case_insensitive: bool = True):
        self.request = request
        self.case_insensitive = case_insensitive
        implicit, little = request.encoding or (False, True)
        # The response goes back in the transfer syntax the request came in: elements
        # encoded for it are copied as they are (see Dataset.set_original_encoding).
        self.implicit, self.little = implicit, little
        self.fields: list[tuple[BaseTag, Key]] = []
        self.sequences: list[tuple[BaseTag, Key, Dataset | None]] = []
        tags: set[int] = set()
        for value in request.values:
            tags.add(value.key.tag)
            if value.key.vr == "SQ":
                self.sequences.append((BaseTag(value.key.tag), value.key, value.item))
            else:
                self.fields.append((BaseTag(value.key.tag), value.key))
        for upper in request.model.levels_above(request.level):
            key = unique_key(request.model, upper)
            if key.tag not in tags:
                self.fields.append((BaseTag(key.tag), key))
        # Elements every response holds with the same value, built once (raw: immutable).
        shared: dict[BaseTag, Any] = {}
        # C.4.1.1.3.2 note 2: no value to send. An ambiguous VR ("US or SS") is settled by
        # pydicom on a mutable element of each response's own.
        self.ambiguous = [(tag, vr) for tag, vr in request.unsupported if len(vr) != 2]
        for tag, vr in request.unsupported:
            if len(vr) == 2:
                shared[BaseTag(tag)] = _raw(BaseTag(tag), vr, b"")
        shared[_QUERY_RETRIEVE_LEVEL] = encode_text(_QUERY_RETRIEVE_LEVEL, "CS", request.level)
        # C.4.1.1.3.2: Retrieve AE Title shall be present (we hold no File-Set IDs).
        shared[_RETRIEVE_AE_TITLE] = encode_text(_RETRIEVE_AE_TITLE, "AE", retrieve_ae_title)
        if request.want_availability:
            shared[_INSTANCE_AVAILABILITY] = encode_text(_INSTANCE_AVAILABILITY, "CS", "ONLINE")
        self.shared = shared
        # pydicom settles an ambiguous VR ("US or SS") only when it re-encodes everything.
        self.as_encoded = not self.ambiguous and all(len(key.vr) == 2 for _, key in self.fields)
        self.shared_ascii = retrieve_ae_title.isascii() and request.level.isascii()

    def build(self, row: Mapping[str, str]) -> Dataset:
        """The Identifier of one match."""
        elements: dict[BaseTag, Any] = {}
        ascii_only = self.shared_ascii
        for tag, key in self.fields:
            text = row.get(key.keyword, "")
            ascii_only = ascii_only and text.isascii()
            elements[tag] = encode_text(tag, key.vr, text)
        for tag, key, item in self.sequences:
            items = select_items(item, load_items(row.get(key.keyword, "")),
                                 self.case_insensitive)
            element = DataElement(tag, "SQ", DicomSequence(items))
            if ascii_only and items:
                ascii_only = not _has_non_ascii(Dataset({tag: element}))
            elements[tag] = element
        for tag, vr in self.ambiguous:
            elements[BaseTag(tag)] = DataElement(tag, vr, None)
        elements.update(self.shared)
        zone = row.get("TimezoneOffsetFromUTC") if self.request.want_timezone else None
        if zone:
            ascii_only = ascii_only and zone.isascii()
            elements[_TIMEZONE_OFFSET] = encode_text(_TIMEZONE_OFFSET, "SH", zone)
        encodings: str | list[str] = default_encoding
        if not ascii_only:
            elements[_SPECIFIC_CHARACTER_SET] = DataElement(_SPECIFIC_CHARACTER_SET, "CS", UTF8)
            encodings = _UTF8_ENCODINGS
        if self.as_encoded:
            return dataset_of(elements, (self.implicit, self.little, encodings))
        return dataset_of(elements)


def build_response(request: FindRequest, row: Mapping[str, str], retrieve_ae_title: str,
                   case_insensitive: bool = True) -> Dataset:
    """The Identifier of one match (a `ResponseBuilder` of one response)."""
    return ResponseBuilder(request, retrieve_ae_title, case_insensitive).build(row)


def response_keys(request: FindRequest) -> list[Key]:
    """Every stored or computed key a response needs from the index."""
    keys = [value.key for value in request.values]
    tags = {key.tag for key in keys}
    for upper in request.model.levels_above(request.level):
        key = unique_key(request.model, upper)
        if key.tag not in tags:
            keys.append(key)
    return keys
