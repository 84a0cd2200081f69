"""The receive fast path: a C-STORE request's data set goes from the socket into its file in one
copy, hashed as it arrives, instead of through pynetdicom's PDU and DIMSE decoding.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included),
pydicom, the standard library and pynetdicom_internals.sending (the PDU header layouts); the
DUL that uses it (connection.py) hands it the socket reads.

Why: pynetdicom copies each received byte about five times (the PDU read, its `bytes()` copy,
P-DATA-TF decoding, PDV slicing, the fragment's `data[1:]`) and builds several objects per PDU,
then our store pipeline read the whole file back to hash it.

What it does (PS3.8 9.3.5 P-DATA-TF, Annex E): when the DUL is about to read a PDU in Sta6 and
the DIMSE message in progress is a C-STORE request whose data set pynetdicom streams to a file
(its command set decoded, the data set due), it reads the PDU header (when the socket holds
it: no poll before each read). A P-DATA-TF is read
whole into one reused buffer; if every PDV in it is a data set fragment of the message's
presentation context, their payloads go straight to the file and into a SHA-256. The last
fragment's payload too; then a one-byte "last fragment" PDV is handed to pynetdicom, which
completes the message its usual way (events, C-STORE primitive, the DIMSE queue). Anything else
(another PDU type, a command fragment, another context, a malformed item, TLS, events still
queued) goes pynetdicom's way: what was already read of a PDU (its header, or all of it) is
handed back through `pushback`, so its bytes are decoded exactly as before.

The hash covers the whole file: what pynetdicom wrote before the fast path took a message over
(the preamble and File Meta Information, which `write_file_meta` notes as it writes them; read
back from the file if anything else was written) is hashed first. It is
offered to the store handler only when the file's length equals what was hashed, so a PDU that
went pynetdicom's way in the middle of a message costs a hash at store time, never a wrong one.

Every 256 KiB received, and at the last fragment, the file's write to disk is started (Linux
sync_file_range, without waiting), so the fsync before the answer finds most of it done.

The File Meta Information pynetdicom writes at the head of each received file (PS3.10 7.1) is
encoded here from its six values, byte for byte as pydicom writes it, instead of through a
pydicom data set and its writer (a tenth of what a store cost in the DUL thread). The file
itself is a plain buffered file (`received_data_set_file`), not tempfile's wrapper.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import io
import os
import ssl
import struct
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from pydicom.filewriter import write_file_meta_info
from pynetdicom import (
    PYNETDICOM_IMPLEMENTATION_UID,
    PYNETDICOM_IMPLEMENTATION_VERSION,
)
from pynetdicom import dimse_messages as _dimse_messages_module

# The PDU and PDV headers and control bits, as the send fast path writes them (PS3.8 9.3.5, E.2).
from pacs.dimse.pynetdicom_internals.sending import _COMMAND, _LAST, _PDU_HEADER, _PDV_HEADER

_P_DATA_TF = 0x04
_FIRST_BUFFER = 64 * 1024  # grows to the largest PDU the peer sends (bounded by the caller)
_WRITE_BEHIND = 256 * 1024  # start the disk write each time this much more has arrived
_PART10_PREFIX = 132  # the 128-byte preamble and 'DICM' (PS3.10 7.1)
_HEAD = 64 * 1024  # the first bytes of a received file, kept for the store's header read
_WRITTEN_PREFIX = "minipacs_written_prefix"  # on a received file: the bytes it starts with

# Reads into the whole view; returns how many bytes came (fewer: the peer closed). Raises
# OSError (TimeoutError included) when the connection fails, having said why.
ReceiveInto = Callable[[memoryview], int]
# Reads into the view what the socket already holds, without waiting; 0 when nothing is there.
ReadWaiting = Callable[[Any, memoryview], int]


def _sync_file_range() -> Callable[[int], None] | None:
    """Linux's sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE): start writing a file's dirty
    pages to disk without waiting (ctypes releases the GIL); None where it does not exist."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]

    def start(fd: int) -> None:
        function(fd, 0, 0, 2)  # a failure only means the fsync does all the work

    return start


# The store's fsync then finds most of the data set already on disk: receiving and writing
# overlap instead of the fsync waiting for all of it after the last byte came.
start_writeback = _sync_file_range()


def last_fragment_pdu(context_id: int) -> bytes:
    """A P-DATA-TF with one empty data set fragment marked last (PS3.8 E.2): what pynetdicom
    is given to complete a message whose payload the fast path wrote."""
    return _PDU_HEADER.pack(_P_DATA_TF, 0, 6) + _PDV_HEADER.pack(2, context_id, _LAST)


def data_fragments(body: memoryview, context_id: int) -> list[tuple[int, int, bool]] | None:
    """(start, end, is last) of every PDV payload in a P-DATA-TF body, when all are data set
    fragments of `context_id` and none follows a last one; None otherwise."""
    fragments: list[tuple[int, int, bool]] = []
    offset, length = 0, len(body)
    while offset < length:
        if length - offset < _PDV_HEADER.size:
            return None
        item_length, item_context, control = _PDV_HEADER.unpack_from(body, offset)
        end = offset + 4 + item_length
        if (item_length < 2 or end > length or item_context != context_id
                or control & _COMMAND or (fragments and fragments[-1][2])):
            return None
        fragments.append((offset + _PDV_HEADER.size, end, bool(control & _LAST)))
        offset = end
    return fragments or None


class DataSetReceiver:
    """The fast path of one association's DUL thread (see the module docstring)."""

    def __init__(self, dul: Any, receive_into: ReceiveInto, read_waiting: ReadWaiting,
                 length_limit: int):
        self.dul = dul
        self._receive_into = receive_into
        self._read_waiting = read_waiting
        self._length_limit = length_limit
        self._buffer = bytearray(_FIRST_BUFFER)
        self._header = bytearray(_PDU_HEADER.size)
        self._message: Any = None  # the message whose data set is being hashed
        self._digest: Any = None
        self._hashed = 0
        self._head = bytearray()
        self._unwritten = 0  # bytes given to the file since its writeback was last started
        # Data set file path -> (SHA-256 hex, size, first bytes), for the store handler to take.
        self.digests: dict[str, tuple[str, int, bytes]] = {}

    def receive(self) -> bool:
        """Read the next PDU the fast way; False when pynetdicom must read it (if it is
        already read, `dul.pushback` holds it)."""
        dul = self.dul
        message = dul.assoc.dimse.message
        data_file = getattr(message, "_data_set_file", None)
        if data_file is None or dul.event_queue.queue \
                or dul.state_machine.current_state != "Sta6":
            return False
        sock = getattr(dul.socket, "socket", None)
        if sock is None or isinstance(sock, ssl.SSLSocket):
            return False  # TLS reads stay pynetdicom's
        header = memoryview(self._header)
        try:
            got = self._read_waiting(sock, header)
        except OSError:
            return False  # pynetdicom's read meets the same error and says Evt17
        if not got:
            return False  # nothing yet, or the end: pynetdicom's read waits, or says Evt17
        try:
            got += self._receive_into(header[got:]) if got < _PDU_HEADER.size else 0
        except OSError:
            dul.event_queue.put("Evt17")  # PS3.8: transport connection closed
            return True
        pdu_type, _, length = (_PDU_HEADER.unpack(self._header) if got == _PDU_HEADER.size
                               else (None, 0, 0))
        if pdu_type != _P_DATA_TF or length > self._length_limit:
            dul.pushback = bytes(header[:got])  # pynetdicom reads the rest and decides
            return False
        total = _PDU_HEADER.size + length
        if len(self._buffer) < total:
            self._buffer = bytearray(total)
        view = memoryview(self._buffer)[:total]
        view[:_PDU_HEADER.size] = header
        try:
            received = _PDU_HEADER.size + self._receive_into(view[_PDU_HEADER.size:])
        except OSError:
            dul.event_queue.put("Evt17")  # PS3.8: transport connection closed
            return True
        if received < total:
            dul.pushback = bytes(view[:received])  # pynetdicom reports the short PDU
            return False
        fragments = data_fragments(view[_PDU_HEADER.size:], int(message.context_id))
        if fragments is None:
            dul.pushback = bytes(view)
            return False
        self._write(message, data_file, view[_PDU_HEADER.size:], fragments)
        if fragments[-1][2]:
            dul.pushback = last_fragment_pdu(int(message.context_id))
            return False
        return True

    def _write(self, message: Any, data_file: Any, body: memoryview,
               fragments: list[tuple[int, int, bool]]) -> None:
        if self._message is not message:
            self._take_over(message, data_file)
        for start, end, _last in fragments:
            payload = body[start:end]
            self._digest.update(payload)
            data_file.write(payload)
            if len(self._head) < _HEAD:
                self._head += payload[:_HEAD - len(self._head)]
            self._hashed += end - start
            self._unwritten += end - start
        # At the last fragment too: the disk works on the rest while the store checks the header.
        if ((self._unwritten >= _WRITE_BEHIND or fragments[-1][2])
                and start_writeback is not None):
            data_file.flush()
            start_writeback(data_file.fileno())
            self._unwritten = 0
        if fragments[-1][2]:
            if data_file.tell() == self._hashed:  # nothing was written past the hash
                path = str(Path(data_file.name))
                self.digests[path] = (self._digest.hexdigest(), self._hashed, bytes(self._head))
            self._message = self._digest = None
            self._head = bytearray()

    def _take_over(self, message: Any, data_file: Any) -> None:
        """Start hashing a message's file from what pynetdicom wrote so far: the preamble and
        File Meta Information `write_file_meta` noted, or else (pynetdicom wrote a data
        fragment too) the file read back once."""
        prefix = getattr(data_file, _WRITTEN_PREFIX, None)
        if prefix is None or data_file.tell() != len(prefix):
            data_file.flush()
            with open(data_file.name, "rb") as written:
                prefix = written.read()
        self._message = message
        self._digest = hashlib.sha256(prefix)
        self._hashed = len(prefix)
        self._head = bytearray(prefix[:_HEAD])
        self._unwritten = 0

    def take_digest(self, path: Path | str) -> tuple[str, int, bytes] | None:
        """The (SHA-256 hex, size, first bytes) of the data set file at `path`, once; None when
        the fast path did not see all of it."""
        return self.digests.pop(str(path), None)


# --- the file a received data set is written to --------------------------------------------------

class ReceivedDataSetFile(io.BufferedWriter):
    """A new file in the temp folder, written through one buffer: what pynetdicom's
    `NamedTemporaryFile(delete=False, mode="wb")` gave it, without the wrapper that wrapped
    each method anew for every file (and its random-name machinery). `file` is itself, as
    pynetdicom flushes `file.file`; `name` is the path."""

    @property
    def file(self) -> ReceivedDataSetFile:
        """The file under the (absent) wrapper: itself."""
        return self


def _private_file(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NOFOLLOW", 0), 0o600)


def received_data_set_file(suffix: str = "", prefix: str = "tmp", dir: str | None = None,  # noqa: A002
                           **_ignored: Any) -> ReceivedDataSetFile:
    """pynetdicom's `NamedTemporaryFile(delete=False, mode="wb", suffix=".dcm")` for received
    data sets: a new file for writing, readable and writable by this user only, in `dir`
    (tempfile's folder by default: the archive's), left in place when closed."""
    folder = dir if dir is not None else tempfile.gettempdir()
    for _attempt in range(100):
        path = os.path.join(folder, f"{prefix}{os.urandom(8).hex()}{suffix}")
        try:
            raw = io.FileIO(path, "xb", opener=_private_file)  # "x": O_EXCL, never an old file
        except FileExistsError:
            continue
        return ReceivedDataSetFile(raw)
    raise FileExistsError(f"no free name for a received data set in {folder}")


# --- the File Meta Information of a received file (PS3.10 7.1) ------------------------------------

class FileMetaValues(NamedTuple):
    """The values pynetdicom puts in a received file's File Meta Information."""

    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    implementation_uid: str
    implementation_version: str


def file_meta_values(*, sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
                     implementation_uid: str = PYNETDICOM_IMPLEMENTATION_UID,
                     implementation_version: str = PYNETDICOM_IMPLEMENTATION_VERSION,
                     ) -> FileMetaValues:
    """pynetdicom's `create_file_meta`, as plain values (no pydicom data set)."""
    return FileMetaValues(str(sop_class_uid), str(sop_instance_uid), str(transfer_syntax),
                          str(implementation_uid), str(implementation_version))


def _short_element(element: int, vr: bytes, value: bytes) -> bytes:
    return struct.pack("<HH2sH", 0x0002, element, vr, len(value)) + value


def encode_file_meta(meta: FileMetaValues) -> bytes | None:
    """The group 0002 elements in Explicit VR Little Endian, Group Length first, as pydicom's
    `write_file_meta_info` writes them; None for values it would encode otherwise (not
    printable ASCII, or too long for a 16-bit length)."""
    texts = (meta.sop_class_uid, meta.sop_instance_uid, meta.transfer_syntax,
             meta.implementation_uid, meta.implementation_version)
    if not all(text.isascii() and text.isprintable() and len(text) < 0xFFFE for text in texts):
        return None
    uids = [text.encode() + b"\x00" * (len(text) % 2) for text in texts[:4]]
    version = texts[4].encode() + b" " * (len(texts[4]) % 2)
    body = (struct.pack("<HH2sHI", 0x0002, 0x0001, b"OB", 0, 2) + b"\x00\x01"
            + _short_element(0x0002, b"UI", uids[0]) + _short_element(0x0003, b"UI", uids[1])
            + _short_element(0x0010, b"UI", uids[2]) + _short_element(0x0012, b"UI", uids[3])
            + _short_element(0x0013, b"SH", version))
    return _short_element(0x0000, b"UL", struct.pack("<I", len(body))) + body


def write_file_meta(fp: BinaryIO, file_meta: Any, enforce_standard: bool = True) -> None:
    """pydicom's `write_file_meta_info` for what `file_meta_values` made; anything else (or a
    value encoded otherwise) is written by pydicom itself."""
    encoded = encode_file_meta(file_meta) if isinstance(file_meta, FileMetaValues) else None
    if encoded is not None:
        fp.write(encoded)
        if fp.tell() == _PART10_PREFIX + len(encoded):
            # What the file holds now (pynetdicom wrote the preamble and 'DICM' first).
            with contextlib.suppress(AttributeError):  # a file object without attributes
                setattr(fp, _WRITTEN_PREFIX, bytes(_PART10_PREFIX - 4) + b"DICM" + encoded)
        return
    if isinstance(file_meta, FileMetaValues):
        from pynetdicom.dsutils import create_file_meta
        file_meta = create_file_meta(**file_meta._asdict())
    write_file_meta_info(fp, file_meta, enforce_standard)


def install_receiving_hooks() -> tuple[str, ...]:
    """Put the File Meta Information encoder in place; what it replaces, for the record. (The
    data set fast path is installed with the DUL that owns it.)"""
    _dimse_messages_module.create_file_meta = file_meta_values  # type: ignore[assignment]
    _dimse_messages_module.write_file_meta_info = write_file_meta  # type: ignore[assignment]
    _dimse_messages_module.NamedTemporaryFile = received_data_set_file  # type: ignore[assignment]
    return ("dimse_messages.create_file_meta", "dimse_messages.write_file_meta_info",
            "dimse_messages.NamedTemporaryFile")
