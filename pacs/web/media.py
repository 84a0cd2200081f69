"""Media types and transfer syntaxes of DICOMweb (PS3.18 8.7): reading Accept, choosing what
each instance or frame is sent as.

Room: web/. Imports pydicom's UIDs only. Accept values with quoted and unquoted `type=`,
`transfer-syntax=` and `q=` all parse; a wildcard matches as RFC 9110 says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian

from pacs.web.errors import WebError

DICOM = "application/dicom"
DICOM_JSON = "application/dicom+json"
OCTET_STREAM = "application/octet-stream"
MULTIPART = "multipart/related"
JPEG, PNG = "image/jpeg", "image/png"
ANY_SYNTAX = "*"
# PS3.18 8.7.3.5.2: what application/dicom means when no transfer-syntax is given.
DEFAULT_SYNTAX = str(ExplicitVRLittleEndian)

_JPEG_SYNTAXES = ("1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
                  "1.2.840.10008.1.2.4.70")
# PS3.18 Table 8.7.3-5 (single-frame media types of compressed pixel data), by transfer syntax.
FRAME_MEDIA_TYPES: dict[str, str] = {
    **{uid: JPEG for uid in _JPEG_SYNTAXES},
    "1.2.840.10008.1.2.4.80": "image/jls",
    "1.2.840.10008.1.2.4.81": "image/jls",
    "1.2.840.10008.1.2.4.90": "image/jp2",
    "1.2.840.10008.1.2.4.91": "image/jp2",
    "1.2.840.10008.1.2.4.92": "image/jpx",
    "1.2.840.10008.1.2.4.93": "image/jpx",
    "1.2.840.10008.1.2.4.201": "image/jphc",
    "1.2.840.10008.1.2.4.202": "image/jphc",
    "1.2.840.10008.1.2.4.203": "image/jphc",
    "1.2.840.10008.1.2.5": "image/dicom-rle",
    "1.2.840.10008.1.2.4.100": "video/mpeg",
    "1.2.840.10008.1.2.4.101": "video/mpeg",
    "1.2.840.10008.1.2.4.102": "video/mp4",
    "1.2.840.10008.1.2.4.103": "video/mp4",
    "1.2.840.10008.1.2.4.104": "video/mp4",
    "1.2.840.10008.1.2.4.105": "video/mp4",
    "1.2.840.10008.1.2.4.106": "video/mp4",
    "1.2.840.10008.1.2.4.107": "video/H265",
    "1.2.840.10008.1.2.4.108": "video/H265",
}
_TOKEN = re.compile(r'\s*([^=;,\s]+)\s*(?:=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*))?\s*')


@dataclass(frozen=True)
class MediaRange:
    """One entry of an Accept header: `type/subtype`, its parameters, its weight."""

    media_type: str
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0

    @property
    def part_type(self) -> str:
        """For multipart/related, the `type` parameter (the media type of each part)."""
        return self.params.get("type", "").lower()

    @property
    def transfer_syntax(self) -> str:
        """The `transfer-syntax` parameter, or ''."""
        return self.params.get("transfer-syntax", "")

    def matches(self, media_type: str) -> bool:
        """Whether this range admits `media_type` (wildcards allowed on our side)."""
        return _matches(self.media_type, media_type)


def _matches(pattern: str, media_type: str) -> bool:
    kind, _, sub = pattern.partition("/")
    want_kind, _, want_sub = media_type.lower().partition("/")
    return kind in ("*", want_kind) and sub in ("*", want_sub)


def _split(header: str) -> list[str]:
    """Split at commas that are not inside quotes."""
    parts, current, quoted = [], [], False
    for char in header:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def parse_media_range(text: str) -> MediaRange:
    """One media range: `type/subtype; name=value; name="quoted value"`."""
    head, _, rest = text.partition(";")
    params: dict[str, str] = {}
    q = 1.0
    for piece in rest.split(";") if rest else []:
        match = _TOKEN.fullmatch(piece)
        if not match:
            raise WebError(400, f"malformed media type parameter {piece.strip()!r}")
        name, value = match[1].lower(), (match[2] or "")
        if value.startswith('"'):
            value = value[1:-1].replace('\\"', '"')
        if name == "q":
            try:
                q = float(value)
            except ValueError:
                raise WebError(400, f"malformed q value {value!r}") from None
        else:
            params[name] = value
    return MediaRange(head.strip().lower(), params, q)


def parse_accept(header: str | None) -> list[MediaRange]:
    """The ranges of an Accept header, best first (q, then order); `*/*` when absent."""
    ranges = [parse_media_range(part) for part in _split(header or "")] or [MediaRange("*/*")]
    ranges = [r for r in ranges if r.q > 0]
    return sorted(ranges, key=lambda r: -r.q)


def accept_of(headers_accept: str | None, query_accept: str | None) -> list[MediaRange]:
    """PS3.18 8.3.3.1: an `accept` query parameter replaces the Accept header."""
    return parse_accept(query_accept if query_accept else headers_accept)


# --- what an instance is sent as (WADO-RS, application/dicom) ----------------------------------

@dataclass(frozen=True)
class InstanceChoice:
    """How one instance goes out: as stored, or converted to `transfer_syntax`."""

    transfer_syntax: str
    as_stored: bool


def dicom_syntaxes(ranges: list[MediaRange]) -> list[str] | None:
    """The transfer syntaxes (or `*`) acceptable for application/dicom parts, best first;
    None when no range admits multipart/related with application/dicom parts."""
    found: list[str] = []
    for entry in ranges:
        if entry.media_type not in ("*/*", "multipart/*", MULTIPART):
            continue
        if entry.part_type and not _matches(entry.part_type, DICOM):
            continue
        found.append(entry.transfer_syntax or DEFAULT_SYNTAX)
    return found or None


def choose_instance_syntax(stored: str, acceptable: list[str]) -> InstanceChoice | None:
    """The first acceptable way to send an instance stored in `stored`: byte for byte when
    `*` or its own syntax is acceptable, else a conversion we can make (to Explicit VR Little
    Endian, from anything but Big Endian); None when there is none."""
    for syntax in acceptable:
        if syntax in (ANY_SYNTAX, stored):
            return InstanceChoice(stored, True)
        if syntax == DEFAULT_SYNTAX and UID(stored) != ExplicitVRBigEndian:
            return InstanceChoice(syntax, False)
    return None


def require(choice: object | None, what: str) -> None:
    """406 Not Acceptable when no representation fits the Accept header."""
    if choice is None:
        raise WebError(406, f"none of the acceptable media types can carry {what}")


# --- what a frame is sent as (WADO-RS frames and pixel bulk data) ------------------------------

@dataclass(frozen=True)
class FrameChoice:
    """How frames go out: their media type and transfer syntax, decoded or as stored."""

    media_type: str
    transfer_syntax: str
    decode: bool


def choose_frame_type(ranges: list[MediaRange], stored: str) -> FrameChoice | None:
    """PS3.18 8.7.3.5.3-4: native frames as application/octet-stream (decompressed when
    stored compressed), or compressed frames as stored under their image/video type."""
    compressed = UID(stored).is_encapsulated
    stored_type = FRAME_MEDIA_TYPES.get(stored, OCTET_STREAM)
    native = FrameChoice(OCTET_STREAM, DEFAULT_SYNTAX, compressed)
    as_stored = FrameChoice(stored_type, stored, False)
    for entry in ranges:
        if entry.media_type not in ("*/*", "multipart/*", MULTIPART):
            continue
        part = entry.part_type or (OCTET_STREAM if entry.media_type == MULTIPART else "*/*")
        syntax = entry.transfer_syntax
        if part == OCTET_STREAM:
            if syntax in ("", ANY_SYNTAX, DEFAULT_SYNTAX):
                return native
        elif not compressed and _matches(part, OCTET_STREAM):
            return native
        elif compressed and _matches(part, stored_type) and syntax in ("", ANY_SYNTAX, stored):
            return as_stored
        elif compressed and _matches(part, OCTET_STREAM) and syntax in ("", DEFAULT_SYNTAX):
            return native
    return None
