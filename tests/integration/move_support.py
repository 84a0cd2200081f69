"""Shared helpers of the C-MOVE / C-GET tests (no tests here): a test archive, DCMTK
storescp, an in-process pynetdicom Storage SCP with knobs, and SCU calls collecting every
response with its counts."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, AllStoragePresentationContexts, _config, build_role, evt
from pynetdicom.pdu_primitives import A_RELEASE

from pacs.archive.encoding import read_layout
from pacs.config import RemoteAE
from pacs.dimse.server import RunningServer
from pacs.index.records import InstanceRecord
from pacs.model.levels import PATIENT_ROOT_GET, PATIENT_ROOT_MOVE, STUDY_ROOT_GET, STUDY_ROOT_MOVE
from pacs.services.context import Services
from tests.dcmtk import dcmtk_env, require_tool
from tests.factory import make_dataset, uid, write_dataset
from tests.postgres import free_port

PATIENT_ROOT = "P"
STUDY_ROOT = "S"
MOVE_MODELS = {PATIENT_ROOT: PATIENT_ROOT_MOVE, STUDY_ROOT: STUDY_ROOT_MOVE}


# --- the test archive ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Layout:
    """Patient P1: study S1 (series SE1 x3, SE2 x2) and study S2 (SE3 x1); patient P2: one."""

    study_s1: str = uid("P1", "S1")
    study_s2: str = uid("P1", "S2")
    series_se1: str = uid("P1", "S1", "SE1")
    series_se2: str = uid("P1", "S1", "SE2")
    images_se1: tuple[str, ...] = tuple(uid("P1", "S1", "SE1", i) for i in (1, 2, 3))


LAYOUT = Layout()
SHAPE = {("P1", "S1", "SE1"): 3, ("P1", "S1", "SE2"): 2, ("P1", "S2", "SE3"): 1,
         ("P2", "S9", "SE9"): 1}


def ingest(services: Services, datasets: list[Dataset], folder: Path) -> list[str]:
    """Store data sets through the ingest pipeline; their SOP Instance UIDs in order."""
    uids = []
    for dataset in datasets:
        path = write_dataset(dataset, folder)
        result = services.ingestor.store(path)
        uids.append(result.sop_instance_uid)
    return uids


def populate(services: Services, folder: Path) -> list[str]:
    """The LAYOUT archive; every SOP Instance UID."""
    datasets = [
        make_dataset(patient_id=patient, study=study, series=series, instance=number)
        for (patient, study, series), count in SHAPE.items()
        for number in range(1, count + 1)
    ]
    return ingest(services, datasets, folder)


def records(services: Services, sop_instance_uids: list[str]) -> list[InstanceRecord]:
    """The index records of these instances."""
    found = [services.index.get_instance(value) for value in sop_instance_uids]
    assert all(found)
    return [record for record in found if record is not None]


def stored_data_set(services: Services, sop_instance_uid: str) -> bytes:
    """The data set bytes of an archived instance, as stored."""
    record = services.index.get_instance(sop_instance_uid)
    assert record is not None
    path = services.archive.absolute(record.file_path)
    return path.read_bytes()[read_layout(path).dataset_offset:]


def assert_same_instance(services: Services, received: Path) -> None:
    """A received Part 10 file holds the archived data set: equal decoded, and equal bytes
    when it came in the stored transfer syntax."""
    layout = read_layout(received)
    record = services.index.get_instance(layout.media_sop_instance_uid)
    assert record is not None, received
    stored = services.archive.absolute(record.file_path)
    assert pydicom.dcmread(received) == pydicom.dcmread(stored)
    if layout.transfer_syntax == read_layout(stored).transfer_syntax:
        assert (received.read_bytes()[layout.dataset_offset:]
                == stored_data_set(services, layout.media_sop_instance_uid))


def file_data_sets(folder: Path) -> dict[str, bytes]:
    """SOP Instance UID -> data set bytes of every Part 10 file under `folder`."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            layout = read_layout(path)
            found[layout.media_sop_instance_uid] = path.read_bytes()[layout.dataset_offset:]
    return found


# --- DCMTK storescp -----------------------------------------------------------------------------

def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None,
                  timeout: float = 15) -> None:
    """Poll a TCP connect to 127.0.0.1:port until it is accepted."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"listener exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.01)
    raise TimeoutError(f"nothing listens on port {port}")


class StoreSCP:
    """DCMTK storescp on a free port writing what it receives, bit-preserving, into a folder."""

    def __init__(self, folder: Path, ae_title: str = "DEST", *options: str,
                 port: int | None = None):
        self.folder = folder
        self.ae_title = ae_title
        self.port = port or free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [require_tool("storescp"), "-aet", ae_title, "+B", "-od", str(folder), *options,
             str(self.port)],
            env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, self.process)

    def received(self) -> dict[str, bytes]:
        """SOP Instance UID -> data set bytes of every file written so far."""
        return file_data_sets(self.folder)

    def stop(self) -> None:
        """Terminate storescp and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# --- pynetdicom Storage SCP -----------------------------------------------------------------------

@dataclass
class Received:
    """One C-STORE a Receiver answered."""

    sop_instance_uid: str
    transfer_syntax: str
    data_set: bytes
    move_originator_ae: str | None
    move_originator_id: int | None


@dataclass
class Receiver:
    """An in-process Storage SCP: which syntaxes it accepts, what it answers, when it aborts."""

    ae_title: str = "DEST"
    transfer_syntaxes: tuple[str, ...] = (ExplicitVRLittleEndian, ImplicitVRLittleEndian)
    status: int = 0x0000
    delay: float = 0.0
    abort_after: int | None = None
    # While set to an unset Event, the A-RELEASE-RP waits for it: a destination slow to release.
    release_gate: threading.Event | None = None
    received: list[Received] = field(default_factory=list)
    associations: int = 0
    released: int = 0
    connections_closed: int = 0
    port: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.ae = AE(ae_title=self.ae_title)
        self.ae.maximum_associations = 10
        for context in AllStoragePresentationContexts:
            self.ae.add_supported_context(context.abstract_syntax, list(self.transfer_syntaxes))
        handlers = [(evt.EVT_C_STORE, self._on_store), (evt.EVT_ESTABLISHED, self._on_open),
                    (evt.EVT_ACSE_SENT, self._on_acse_sent), (evt.EVT_RELEASED, self._on_released),
                    (evt.EVT_CONN_CLOSE, self._on_close)]
        self.server = self.ae.make_server(("127.0.0.1", 0), evt_handlers=handlers)
        # A short poll interval: shutdown() waits for the serving loop to notice.
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02},
                         daemon=True).start()
        self.ae._servers.append(self.server)
        self.port = int(self.server.server_address[1])

    def _on_open(self, event: Any) -> None:
        with self._lock:
            self.associations += 1

    def _on_acse_sent(self, event: Any) -> None:
        primitive = event.primitive
        if (self.release_gate is not None and isinstance(primitive, A_RELEASE)
                and primitive.result is not None):  # our A-RELEASE-RP, about to be sent
            self.release_gate.wait(timeout=60)

    def _on_released(self, event: Any) -> None:
        with self._lock:
            self.released += 1

    def _on_close(self, event: Any) -> None:
        with self._lock:
            self.connections_closed += 1

    def _on_store(self, event: Any) -> int:
        if self.delay:
            time.sleep(self.delay)
        request = event.request
        with self._lock:
            self.received.append(Received(
                str(request.AffectedSOPInstanceUID), str(event.context.transfer_syntax),
                _received_bytes(event),
                request.MoveOriginatorApplicationEntityTitle, request.MoveOriginatorMessageID,
            ))
            count = len(self.received)
        if self.abort_after is not None and count > self.abort_after:
            event.assoc.abort()
            return 0xA700
        return self.status

    def stop(self) -> None:
        """Stop listening and drop open associations."""
        if self.release_gate is not None:
            self.release_gate.set()
        self.ae.shutdown()


# --- SCU calls ----------------------------------------------------------------------------------

@dataclass
class Response:
    """One C-MOVE/C-GET response: status, the four counts and the Failed SOP Instance UIDs."""

    status: int
    remaining: int | None
    completed: int | None
    failed: int | None
    warning: int | None
    failed_uids: list[str] | None
    comment: str | None = None
    offending: list[int] | None = None

    @property
    def total(self) -> int:
        """completed + failed + warning + remaining (absent counts as 0)."""
        return sum(v or 0 for v in (self.remaining, self.completed, self.failed, self.warning))


def response(status: Dataset, identifier: Dataset | None) -> Response:
    """A Response from pynetdicom's (status, identifier) pair."""
    failed_uids = None
    if identifier is not None and "FailedSOPInstanceUIDList" in identifier:
        value = identifier.FailedSOPInstanceUIDList
        if isinstance(value, MultiValue):
            failed_uids = [str(v) for v in value]
        else:
            failed_uids = [str(value)] if value else []
    return Response(
        int(status.Status),
        status.get("NumberOfRemainingSuboperations"),
        status.get("NumberOfCompletedSuboperations"),
        status.get("NumberOfFailedSuboperations"),
        status.get("NumberOfWarningSuboperations"),
        failed_uids,
        status.get("ErrorComment"),
        _tags(status.OffendingElement) if "OffendingElement" in status else None,
    )


def identifier(level: str, **keys: Any) -> Dataset:
    """A retrieve identifier: QueryRetrieveLevel and the given keys."""
    dataset = Dataset()
    dataset.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(dataset, keyword, value)
    return dataset


# The two studies most retrieve tests move: S1 holds 5 instances, S2 one, in the same contexts.
STUDY_S1 = identifier("STUDY", StudyInstanceUID=LAYOUT.study_s1)
STUDY_S2 = identifier("STUDY", StudyInstanceUID=LAYOUT.study_s2)


def move(server: RunningServer, query: Dataset, destination: str = "DEST",
         model: str = STUDY_ROOT, calling_ae: str = "MOVESCU",
         cancel_after: int | None = None, then: Callable[[Any], None] | None = None,
         ) -> list[Response]:
    """C-MOVE with a pynetdicom SCU; every response. `cancel_after` pending responses a
    C-CANCEL is sent; `then(association)` runs on the association before it is released."""
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(MOVE_MODELS[model])
    ae.add_requested_context("1.2.840.10008.1.1")
    host, port = server.address
    association = ae.associate(host, port, ae_title="MINIPACS")
    assert association.is_established
    responses = []
    try:
        for status, found in association.send_c_move(query, destination, MOVE_MODELS[model],
                                                     msg_id=7):
            assert status, "no response from the server"
            responses.append(response(status, found))
            pending = [r for r in responses if r.status == 0xFF00]
            if cancel_after is not None and len(pending) == cancel_after:
                context = association._get_valid_context(MOVE_MODELS[model], "", "scu")
                association.send_c_cancel(7, context.context_id)
        if then is not None:
            then(association)
    finally:
        association.release()
    return responses


def check_counts(responses: list[Response], total: int) -> None:
    """Every response adds up to `total`, pending ones count down one at a time."""
    assert responses, "no responses"
    for item in responses:
        assert item.total == total, item
    pending = [r for r in responses if r.status == 0xFF00]
    for before, after in zip(pending, pending[1:], strict=False):
        assert after.remaining is not None and before.remaining is not None
        assert after.remaining < before.remaining


def fixture_storescp(tmp_path: Path) -> Iterator[Callable[..., StoreSCP]]:
    """Body of a `storescp` fixture: a factory of started storescp, all stopped afterwards."""
    started: list[StoreSCP] = []

    def start(*options: str, ae_title: str = "DEST", port: int | None = None) -> StoreSCP:
        scp = StoreSCP(tmp_path / f"storescp{len(started)}", ae_title, *options, port=port)
        started.append(scp)
        return scp

    yield start
    for scp in started:
        scp.stop()


def fixture_receiver() -> Iterator[Callable[..., Receiver]]:
    """Body of a `receiver` fixture: a factory of pynetdicom receivers, stopped afterwards."""
    started: list[Receiver] = []

    def start(**options: Any) -> Receiver:
        receiver = Receiver(**options)
        started.append(receiver)
        return receiver

    yield start
    for receiver in started:
        receiver.stop()



def _received_bytes(event: Any) -> bytes:
    # The server module makes pynetdicom receive data sets into files, for every AE in process.
    if _config.STORE_RECV_CHUNKED_DATASET:
        path = Path(event.dataset_path)
        return path.read_bytes()[read_layout(path).dataset_offset:]
    return bytes(event.encoded_dataset(include_meta=False))


def _tags(value: Any) -> list[int]:
    return [int(v) for v in value] if isinstance(value, MultiValue | list) else [int(value)]


GET_MODELS = {PATIENT_ROOT: PATIENT_ROOT_GET, STUDY_ROOT: STUDY_ROOT_GET}


def get(server: RunningServer, query: Dataset, contexts: dict[str, tuple[str, ...]],
        model: str = STUDY_ROOT, roles: bool = True, delay: float = 0.0,
        cancel_after: int | None = None) -> tuple[list[Response], list[Received]]:
    """C-GET with a pynetdicom SCU proposing `contexts` (SOP class -> syntaxes, one context per
    syntax), with SCP role selection unless `roles` is False; every response and C-STORE."""
    received: list[Received] = []

    def on_store(event: Any) -> int:
        if delay:
            time.sleep(delay)
        received.append(Received(str(event.request.AffectedSOPInstanceUID),
                                 str(event.context.transfer_syntax), _received_bytes(event),
                                 event.request.MoveOriginatorApplicationEntityTitle,
                                 event.request.MoveOriginatorMessageID))
        return 0x0000

    ae = AE(ae_title="GETSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 60
    ae.add_requested_context(GET_MODELS[model])
    for sop_class, syntaxes in contexts.items():
        for syntax in syntaxes:
            ae.add_requested_context(sop_class, [syntax])
    negotiation = [build_role(sop_class, scp_role=True) for sop_class in contexts] if roles else []
    host, port = server.address
    association = ae.associate(host, port, ae_title="MINIPACS", ext_neg=negotiation,
                               evt_handlers=[(evt.EVT_C_STORE, on_store)])
    assert association.is_established
    responses: list[Response] = []
    try:
        for status, found in association.send_c_get(query, GET_MODELS[model], msg_id=11):
            assert status, "no response from the server"
            responses.append(response(status, found))
            pending = [r for r in responses if r.status == 0xFF00]
            if cancel_after is not None and len(pending) == cancel_after:
                context = association._get_valid_context(GET_MODELS[model], "", "scu")
                association.send_c_cancel(11, context.context_id)
    finally:
        association.release()
    return responses, received


def moving_to(server_factory: Callable[..., RunningServer], port: int,
              **settings: Any) -> RunningServer:
    """A server whose one C-MOVE destination, DEST, listens on `port` of this host."""
    return server_factory(remotes=(RemoteAE("DEST", "127.0.0.1", port),), **settings)
