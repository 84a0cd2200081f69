"""Reading what ingest needs from an encoded DICOM file, without touching the pixel data.

Room: archive/. Imports pydicom and the standard library only. `read_layout` parses the File Meta
Information, `check_structure` walks every element header to prove the data set is whole
(pydicom itself accepts truncated files silently) and that Pixel Data is encoded as its transfer
syntax says (PS3.5 A.4: encapsulated exactly under the encapsulated syntaxes), and
`read_header` decodes just the attributes the index keeps.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

PREAMBLE_LENGTH = 128
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT",
             b"UV"}
_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xE000, 0xE00D, 0xE0DD
_MAX_DEPTH = 32
DEFLATED = "1.2.840.10008.1.2.1.99"
IMPLICIT_LITTLE = "1.2.840.10008.1.2"
EXPLICIT_LITTLE = "1.2.840.10008.1.2.1"
EXPLICIT_BIG = "1.2.840.10008.1.2.2"
PIXEL_DATA = (0x7FE0, 0x0010)
NATIVE_SYNTAXES = frozenset({IMPLICIT_LITTLE, EXPLICIT_LITTLE, EXPLICIT_BIG, DEFLATED})
# Encapsulated syntaxes whose data sets carry no Pixel Data to judge: JPIP references pixels
# by URL (PS3.5 A.6), MIME/XML and SMPTE ST 2110 are no data set encodings; Papyrus is retired.
_NOT_JUDGED = frozenset({
    "1.2.840.10008.1.2.4.94", "1.2.840.10008.1.2.4.95", "1.2.840.10008.1.2.4.204",
    "1.2.840.10008.1.2.4.205", "1.2.840.10008.1.2.6.1", "1.2.840.10008.1.2.6.2",
    "1.2.840.10008.1.2.7.1", "1.2.840.10008.1.2.7.2", "1.2.840.10008.1.2.7.3",
    "1.2.840.10008.1.20",
})


class MalformedDataset(ValueError):
    """The bytes are not a complete, parseable DICOM data set; the message says where."""


@dataclass(frozen=True)
class FileLayout:
    """Where the data set starts in a Part 10 file, and how it is encoded."""

    transfer_syntax: str
    dataset_offset: int
    size: int
    media_sop_class_uid: str
    media_sop_instance_uid: str


Source = Path | BinaryIO  # a path, or an open binary file that the caller keeps open


@contextmanager
def _reading(source: Source) -> Iterator[BinaryIO]:
    """`source` as an open binary file: opened (and closed) here when it is a path."""
    if isinstance(source, Path | str):
        with open(source, "rb") as handle:
            yield handle
    else:
        yield source


def has_part10_prefix(path: Path) -> bool:
    """Whether the file has a 128-byte preamble followed by 'DICM'."""
    with open(path, "rb") as handle:
        handle.seek(PREAMBLE_LENGTH)
        return handle.read(4) == b"DICM"


def read_layout(source: Source, size: int | None = None) -> FileLayout:
    """Parse the File Meta Information group of a Part 10 file (PS3.10 7.1); `size` is the
    file's when `source` holds only its first bytes."""
    with _reading(source) as handle:
        if size is None:
            handle.seek(0, 2)
            size = handle.tell()
        handle.seek(PREAMBLE_LENGTH)
        if handle.read(4) != b"DICM":
            raise MalformedDataset("no DICOM Part 10 prefix (preamble + 'DICM')")
        meta: dict[int, bytes] = {}
        while True:
            start = handle.tell()
            header = handle.read(8)
            if len(header) < 8:
                raise MalformedDataset("file ends inside the File Meta Information")
            group, element = struct.unpack("<HH", header[:4])
            if group != 0x0002:
                handle.seek(start)
                break
            vr = header[4:6]
            if vr in _LONG_VRS:
                (length,) = struct.unpack("<I", handle.read(4))
            else:
                (length,) = struct.unpack("<H", header[6:8])
            if length == _UNDEFINED or handle.tell() + length > size:
                raise MalformedDataset(f"meta element (0002,{element:04X}) overruns the file")
            meta[element] = handle.read(length)
        offset = handle.tell()

    def text(element: int) -> str:
        return meta.get(element, b"").rstrip(b"\x00 ").decode("ascii", "replace")

    syntax = text(0x0010)
    if not syntax:
        raise MalformedDataset("File Meta Information has no Transfer Syntax UID")
    return FileLayout(syntax, offset, size, text(0x0002), text(0x0003))


def check_structure(source: Source, layout: FileLayout) -> None:
    """Walk every element header of the data set and prove each value fits in the file.

    Values are skipped with seeks, so the cost does not grow with pixel data size. A deflated
    data set cannot be walked without inflating it and is checked by a full decode instead.
    """
    if layout.transfer_syntax == DEFLATED:
        try:
            with _reading(source) as handle:
                handle.seek(0)
                pixels = pydicom.dcmread(handle, force=True).get_item(0x7FE00010)
        except Exception as exc:  # pydicom raises many types for broken deflate streams
            raise MalformedDataset(f"deflated data set does not decode: {exc}") from None
        check_pixel_encoding(layout.transfer_syntax, _element_length(pixels))
        return
    explicit = layout.transfer_syntax != IMPLICIT_LITTLE
    little = layout.transfer_syntax != EXPLICIT_BIG
    with _reading(source) as handle:
        handle.seek(layout.dataset_offset)
        if layout.dataset_offset >= layout.size:
            raise MalformedDataset("the data set is empty")
        pixel_length = _walk_dataset(handle, layout.size, explicit, little, depth=0,
                                     in_item=False)
    check_pixel_encoding(layout.transfer_syntax, pixel_length)


def read_index_elements(source: Source, layout: FileLayout, tags: Iterable[int]
                        ) -> RawElements | None:
    """`check_structure`, and in the same walk the raw top-level elements among `tags` (and
    Specific Character Set) that pydicom's `read_header` would decode; None for a deflated
    data set, which only a decoder can read (use `check_structure` and `read_header`)."""
    if layout.transfer_syntax == DEFLATED:
        return None
    explicit = layout.transfer_syntax != IMPLICIT_LITTLE
    little = layout.transfer_syntax != EXPLICIT_BIG
    collected: RawElements = {}
    with _reading(source) as handle:
        handle.seek(layout.dataset_offset)
        if layout.dataset_offset >= layout.size:
            raise MalformedDataset("the data set is empty")
        pixel_length = _walk_dataset(handle, layout.size, explicit, little, depth=0,
                                     in_item=False, collect=collected,
                                     wanted=frozenset(tags) | {0x00080005})
    check_pixel_encoding(layout.transfer_syntax, pixel_length)
    return collected


def _element_length(element: object) -> int | None:
    """The encoded length of a decoded element (raw or converted); None when absent."""
    if element is None:
        return None
    if getattr(element, "is_undefined_length", False):
        return _UNDEFINED
    length = getattr(element, "length", None)
    return length if isinstance(length, int) else len(getattr(element, "value", b"") or b"")


def is_encapsulated_syntax(transfer_syntax: str) -> bool | None:
    """Whether Pixel Data must be encapsulated under this syntax; None: not ours to judge
    (a private syntax, or one whose data sets hold no Pixel Data)."""
    if transfer_syntax in NATIVE_SYNTAXES:
        return False
    if transfer_syntax in _NOT_JUDGED:
        return None
    try:
        return bool(UID(transfer_syntax).is_encapsulated)
    except ValueError:  # pydicom cannot type a private UID
        return None


def check_pixel_encoding(transfer_syntax: str, pixel_length: int | None) -> None:
    """PS3.5 A.4 and 8.2: top-level Pixel Data of undefined length (encapsulated) exactly
    under an encapsulated syntax; otherwise no reader can decode it. MalformedDataset if not."""
    if not pixel_length:
        return  # absent or empty: nothing to decode
    encapsulated = pixel_length == _UNDEFINED
    expected = is_encapsulated_syntax(transfer_syntax)
    if expected is False and encapsulated:
        raise MalformedDataset(f"encapsulated Pixel Data, native syntax {transfer_syntax}")
    if expected and not encapsulated:
        raise MalformedDataset(f"native Pixel Data, encapsulated syntax {transfer_syntax}")


# Where pydicom's `stop_before_pixels` stops reading a data set's top level.
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

RawElements = dict[int, tuple[str, bytes | None]]  # tag -> (VR, '' if implicit; value bytes)


def _walk_dataset(
    handle: BinaryIO, end: int, explicit: bool, little: bool, depth: int, in_item: bool,
    collect: RawElements | None = None, wanted: frozenset[int] = frozenset(),
) -> int | None:
    """Skip every element of one data set; the length of its own Pixel Data, if any.

    With `collect`, the top-level elements in `wanted` met before Pixel Data are read into it
    as they are passed (value None: undefined length), the later of two with the same tag
    winning, as pydicom's reader does.
    """
    pixel_length = None
    order = "<" if little else ">"
    tag_of = struct.Struct(order + "HH").unpack_from
    short_length = struct.Struct(order + "H").unpack_from
    long_length = struct.Struct(order + "I").unpack_from
    read, seek = handle.read, handle.seek
    # The position is counted here, not asked of the file: tell() per element costs more.
    position = handle.tell()
    while position < end:
        header = read(8)
        if len(header) < 8:
            raise MalformedDataset(f"data set ends inside an element header at byte {position}")
        group, element = tag_of(header)
        if group == 0xFFFE:
            if in_item and element == _ITEM_END:
                return pixel_length
            raise MalformedDataset(f"unexpected delimiter (FFFE,{element:04X}) at byte {position}")
        vr = header[4:6] if explicit else b""
        if explicit and vr in _LONG_VRS:
            extra = read(4)
            if len(extra) < 4:
                raise MalformedDataset(f"data set ends inside ({group:04X},{element:04X})")
            (length,) = long_length(extra)
            value_at = position + 12
        elif explicit:
            if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
                raise MalformedDataset(f"({group:04X},{element:04X}) has no valid VR at {position}")
            (length,) = short_length(header, 6)
            value_at = position + 8
        else:
            (length,) = long_length(header, 4)
            value_at = position + 8
        tag = group << 16 | element
        keep = False
        if collect is not None:
            if tag in _PIXEL_TAGS:
                collect = None
            else:
                keep = tag in wanted
        if tag == 0x7FE00010:
            pixel_length = length
        if length == _UNDEFINED:
            if keep:
                collect[tag] = (vr.decode("ascii"), None)  # type: ignore[index]
            # Undefined length: a sequence, encapsulated pixel data, or UN holding implicit data.
            items_explicit = explicit and vr != b"UN"
            _walk_items(handle, end, items_explicit, little, depth + 1,
                        f"({group:04X},{element:04X})")
            position = handle.tell()
        else:
            position = value_at + length
            if position > end:
                raise MalformedDataset(
                    f"({group:04X},{element:04X}) declares {length} bytes but the data set ends "
                    f"{end - value_at} bytes later"
                )
            if keep:
                value = read(length)
                if len(value) < length:  # only where `handle` holds the file's first bytes
                    raise MalformedDataset(f"({group:04X},{element:04X}) is cut short")
                collect[tag] = (vr.decode("ascii"), value)  # type: ignore[index]
            elif length:
                seek(position)
    if in_item:
        raise MalformedDataset("data set ends inside an item of undefined length")
    return pixel_length


def _walk_items(
    handle: BinaryIO, end: int, explicit: bool, little: bool, depth: int, tag: str
) -> None:
    if depth > _MAX_DEPTH:
        raise MalformedDataset(f"{tag} nests sequences deeper than {_MAX_DEPTH}")
    order = "<" if little else ">"
    while True:
        header = handle.read(8)
        if len(header) < 8:
            raise MalformedDataset(f"{tag} has undefined length but no sequence delimiter")
        group, element, length = struct.unpack(order + "HHI", header)
        if group != 0xFFFE:
            raise MalformedDataset(f"{tag} holds ({group:04X},{element:04X}) where an item was due")
        if element == _SEQUENCE_END:
            return
        if element != _ITEM:
            raise MalformedDataset(f"{tag} holds an unexpected delimiter (FFFE,{element:04X})")
        if length == _UNDEFINED:
            _walk_dataset(handle, end, explicit, little, depth + 1, in_item=True)
        elif handle.tell() + length > end:
            raise MalformedDataset(f"an item of {tag} declares {length} bytes past the end")
        else:
            handle.seek(length, 1)


def read_header(source: Source, tags: Iterable[int]) -> Dataset:
    """Decode only `tags` (plus Specific Character Set) of the data set, never pixel data."""
    wanted = list(tags) + [0x00080005, 0x00080201]
    try:
        with _reading(source) as handle:
            handle.seek(0)
            dataset = pydicom.dcmread(
                handle, stop_before_pixels=True, defer_size=8192, specific_tags=wanted,
                force=True,
            )
    except (InvalidDicomError, EOFError, ValueError, struct.error, OSError) as exc:
        raise MalformedDataset(f"data set does not parse: {exc}") from None
    return dataset


def uid_text(value: object) -> str:
    """A UID value as plain text ('' when absent)."""
    return str(UID(str(value))).strip("\x00 ") if value else ""
