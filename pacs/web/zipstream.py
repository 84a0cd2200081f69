"""A ZIP archive written as a stream: members go out as their bytes are read, stored (not
compressed), so memory stays flat however large the study.

Room: web/. Imports the standard library only. `zipfile` writes into a pipe that cannot seek,
so it puts each member's CRC and sizes in a data descriptor after the member and the central
directory (ZIP64 where needed) at the end; the generator hands on whatever was written after
each chunk.
"""

from __future__ import annotations

import io
import time
import zipfile
from collections.abc import Iterable, Iterator


class _Pipe:
    """A write-only, unseekable file that keeps what was written until `take` collects it.

    Not an io.IOBase: an archive abandoned mid-way (the client went away) may still be closed
    by the garbage collector, and writing its end into this pipe must not fail then."""

    def __init__(self) -> None:
        self._pending: list[bytes] = []
        self._position = 0

    def write(self, data: bytes) -> int:
        """Keep `data` for the next `take`."""
        chunk = bytes(data)
        self._pending.append(chunk)
        self._position += len(chunk)
        return len(chunk)

    def tell(self) -> int:
        """Bytes written so far (zipfile records member offsets with it)."""
        return self._position

    def seek(self, *_args: int) -> int:
        """Refused: zipfile then writes data descriptors instead of seeking back."""
        raise io.UnsupportedOperation("a ZIP stream cannot seek")

    def flush(self) -> None:
        """Nothing to flush: `take` hands the bytes on."""

    def take(self) -> bytes:
        """Everything written since the last call."""
        data = b"".join(self._pending)
        self._pending.clear()
        return data


class ZipStream:
    """Builds one ZIP archive; `member` and `close` yield its bytes as they are made."""

    def __init__(self) -> None:
        self._pipe = _Pipe()
        self._zip = zipfile.ZipFile(self._pipe, "w",  # type: ignore[call-overload] compression=zipfile.ZIP_STORED,
                                    allowZip64=True)
        self.names: set[str] = set()

    def unique(self, name: str) -> str:
        """`name`, or `name` with a number before its extension when already taken."""
        candidate, number = name, 1
        stem, dot, extension = name.rpartition(".")
        if not dot or "/" in extension:
            stem, dot, extension = name, "", ""
        while candidate in self.names:
            number += 1
            candidate = f"{stem}-{number}{dot}{extension}"
        return candidate

    def member(self, name: str, chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
        """One member from `chunks` (`size` bytes expected: over 4 GiB needs ZIP64 headers)."""
        info = zipfile.ZipInfo(name, time.localtime()[:6])
        info.compress_type = zipfile.ZIP_STORED
        info.file_size = size
        info.external_attr = 0o644 << 16
        self.names.add(name)
        with self._zip.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as target:
            yield self._pipe.take()
            for chunk in chunks:
                target.write(chunk)
                yield self._pipe.take()
        yield self._pipe.take()

    def close(self) -> bytes:
        """The central directory: the archive's last bytes."""
        self._zip.close()
        return self._pipe.take()
