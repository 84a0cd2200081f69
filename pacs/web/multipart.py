"""multipart/related bodies (RFC 2387, PS3.18 8.6.1.2), written and read as streams: a part
is never held whole in memory on either side.

Room: web/. Imports python-multipart (the parser) and the standard library. `MultipartWriter`
frames parts for a streamed response; `MultipartReader` is fed request chunks and calls a
sink for each part's headers, data and end, so STOW-RS can write each part to a file.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from pacs.web.errors import WebError


class MultipartWriter:
    """Frames parts of one multipart/related body with a random boundary."""

    def __init__(self, part_type: str, **params: str):
        self.boundary = uuid.uuid4().hex
        self.part_type = part_type
        self.params = params

    @property
    def content_type(self) -> str:
        """The Content-Type of the whole body (with `type` quoted, as PS3.18 shows it)."""
        extra = "".join(f"; {name}={value}" for name, value in self.params.items())
        return f'multipart/related; type="{self.part_type}"{extra}; boundary={self.boundary}'

    def part(self, chunks: Iterable[bytes], headers: Mapping[str, str]) -> Iterator[bytes]:
        """One part: its delimiter and headers, its body as given, the closing CRLF."""
        lines = [f"--{self.boundary}", *(f"{name}: {value}" for name, value in headers.items())]
        yield ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        yield from chunks
        yield b"\r\n"

    def close(self) -> bytes:
        """The closing delimiter."""
        return f"--{self.boundary}--\r\n".encode("latin-1")


class PartSink(Protocol):
    """What a MultipartReader tells about each part as it arrives."""

    def begin(self, headers: dict[str, str]) -> None:
        """A part starts; its headers (names lower-case)."""

    def data(self, chunk: bytes) -> None:
        """More of the current part's body."""

    def end(self) -> None:
        """The current part is complete."""


def multipart_boundary(content_type: str | None, part_type: str) -> str:
    """The boundary of a multipart/related body whose parts are `part_type`.

    415 when the body is not multipart/related or its `type` is another media type
    (PS3.18 10.5.3: Unsupported Media Type); 400 without a boundary.
    """
    kind, params = parse_options_header(content_type or "")
    if kind.decode("latin-1").lower() != "multipart/related":
        raise WebError(415, f"expected multipart/related; type=\"{part_type}\", "
                            f"not {content_type or 'no Content-Type'}")
    declared = params.get(b"type", b"").decode("latin-1").lower()
    if declared and declared != part_type:
        raise WebError(415, f"parts of type {declared} are not accepted; send {part_type}")
    boundary = params.get(b"boundary", b"").decode("latin-1")
    if not boundary:
        raise WebError(400, "multipart/related without a boundary")
    return boundary


class MultipartReader:
    """Parses a multipart/related body chunk by chunk into a sink's calls."""

    def __init__(self, boundary: str, sink: PartSink):
        self.sink = sink
        self.finished = False
        self._field = b""
        self._value = b""
        self._headers: dict[str, str] = {}
        callbacks = {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": lambda data, start, end: sink.data(bytes(data[start:end])),
            "on_part_end": sink.end,
            "on_end": self._end,
        }
        self.parser = MultipartParser(boundary.encode("latin-1"), callbacks)  # type: ignore[arg-type]

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.decode("latin-1").strip().lower()] = \
            self._value.decode("latin-1").strip()
        self._field = self._value = b""

    def _headers_finished(self) -> None:
        self.sink.begin(self._headers)

    def _end(self) -> None:
        self.finished = True

    def feed(self, chunk: bytes) -> None:
        """Parse the next chunk of the body; 400 when it is not well-formed multipart."""
        try:
            self.parser.write(chunk)
        except MultipartParseError as exc:
            raise WebError(400, f"malformed multipart body: {exc}") from None

    def close(self) -> None:
        """The body ended: 400 when its closing delimiter never came."""
        try:
            self.parser.finalize()
        except MultipartParseError as exc:
            raise WebError(400, f"malformed multipart body: {exc}") from None
        if not self.finished:
            raise WebError(400, "multipart body ends before its closing delimiter")
