"""Storage Commitment Push Model SCP (PS3.4 J.3) against pynetdicom SCUs, on both backends: the
report on the requester's association and on a new one, failure reasons checked against the
files, refusals of the N-ACTION, and a report owed across a crash of the server."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE, evt
from pynetdicom.dimse_messages import N_EVENT_REPORT_RSP

from pacs.config import Peer, RemoteAE
from pacs.dimse.server import RunningServer
from pacs.index.commitment import Commitments
from pacs.services.context import Services
from tests.conftest import ServerProcess
from tests.factory import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, make_file, uid
from tests.integration.modality_support import (
    STORAGE_COMMITMENT,
    STORAGE_COMMITMENT_INSTANCE,
    associated,
)
from tests.postgres import free_port

WAIT = 30.0  # seconds a report may take to arrive: a bound, not a measurement


@dataclass
class Reports:
    """N-EVENT-REPORTs a test SCU received: (event type, information, association)."""

    answer: int = 0x0000  # the status the SCU answers each report with
    received: list[tuple[int, Dataset, Any]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    answered: threading.Event = field(default_factory=threading.Event)

    def handler(self, event: Any) -> tuple[int, None]:
        """EVT_N_EVENT_REPORT: keep the report, answer `answer`."""
        self.received.append((int(event.event_type), event.event_information, event.assoc))
        self.arrived.set()
        return self.answer, None

    def sent(self, event: Any) -> None:
        """EVT_DIMSE_SENT: the answer to a report has left (so releasing cannot cut it off)."""
        if isinstance(event.message, N_EVENT_REPORT_RSP):
            self.answered.set()

    @property
    def handlers(self) -> list[tuple[Any, Any]]:
        """The event bindings of an SCU association or receiver."""
        return [(evt.EVT_N_EVENT_REPORT, self.handler), (evt.EVT_DIMSE_SENT, self.sent)]

    def wait(self, server: RunningServer | None = None) -> tuple[int, Dataset, Any]:
        """The first report, within WAIT seconds, once answered; with `server`, once the
        server has recorded the answer too."""
        assert self.arrived.wait(WAIT), "no N-EVENT-REPORT arrived"
        assert self.answered.wait(WAIT), "the N-EVENT-REPORT was not answered"
        if server is not None:
            server.services.commitments.drain(WAIT)
        return self.received[0]


def stored(services: Services, folder: Path, count: int) -> list[tuple[str, str]]:
    """Store `count` CT instances; their (SOP Class, SOP Instance) UIDs."""
    references = []
    for number in range(1, count + 1):
        path = make_file(folder, patient_id="PC", study="SC", series="SEC", instance=number)
        result = services.ingestor.store(path)
        references.append((CT_IMAGE_STORAGE, result.sop_instance_uid))
    return references


def request(transaction: str, references: list[tuple[str, str]]) -> Dataset:
    """N-ACTION Action Information (PS3.4 Table J.3-1)."""
    information = Dataset()
    information.TransactionUID = transaction
    items = []
    for sop_class, sop_instance in references:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    information.ReferencedSOPSequence = Sequence(items)
    return information


def n_action(assoc: Any, information: Dataset, action_type: int = 1,
             instance: str = STORAGE_COMMITMENT_INSTANCE) -> int:
    """Send the N-ACTION; its status."""
    status, _ = assoc.send_n_action(information, action_type, STORAGE_COMMITMENT, instance)
    return int(status.Status)


@pytest.fixture
def receiver() -> Iterator[Callable[..., tuple[int, Reports]]]:
    """Starts pynetdicom SCUs' report receivers (accepting the SCP role we propose)."""
    started: list[Any] = []

    def start(port: int | None = None, ae_title: str = "MODALITY") -> tuple[int, Reports]:
        reports = Reports()
        ae = AE(ae_title=ae_title)
        ae.add_supported_context(STORAGE_COMMITMENT, scu_role=True, scp_role=True)
        port = port or free_port()
        server = ae.start_server(("127.0.0.1", port), block=False,
                                 evt_handlers=reports.handlers)
        started.append(server)
        return port, reports

    yield start
    for server in started:
        server.shutdown()


def test_the_report_comes_on_the_same_association(server: RunningServer,
                                                  tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2 note: the SCP may send the N-EVENT-REPORT on the N-ACTION's association.
    references = stored(server.services, tmp_path / "in", 2)
    reports = Reports()
    transaction = uid("commit", "same")
    with associated(server, STORAGE_COMMITMENT,
                    evt_handlers=reports.handlers) as assoc:
        assert n_action(assoc, request(transaction, references)) == 0x0000
        event_type, information, on = reports.wait(server)
        assert on is assoc
    assert event_type == 1
    assert information.TransactionUID == transaction
    assert [(i.ReferencedSOPClassUID, i.ReferencedSOPInstanceUID)
            for i in information.ReferencedSOPSequence] == references
    assert "FailedSOPSequence" not in information
    records = Commitments(server.services.index).list()
    assert [r.state for r in records] == ["reported"]


def test_the_report_comes_on_a_new_association_after_release(
        server_factory: Callable[..., RunningServer], receiver: Callable[..., Any],
        tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2: the SCP can report on another association, to the requester's AE.
    port, reports = receiver()
    server = server_factory(remotes=(RemoteAE("MODALITY", "127.0.0.1", port),))
    references = stored(server.services, tmp_path / "in", 3)
    with associated(server, STORAGE_COMMITMENT) as assoc:
        assert n_action(assoc, request(uid("commit", "new"), references)) == 0x0000
    event_type, information, on = reports.wait()
    assert event_type == 1 and len(information.ReferencedSOPSequence) == 3
    assert str(on.requestor.ae_title).strip() == "MINIPACS"


def test_failures_name_their_reason(server: RunningServer, tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2: Event Type 2; each failed instance with its Failure Reason.
    services = server.services
    good, missing, damaged, other_class = stored(services, tmp_path / "in", 4)
    unknown = (CT_IMAGE_STORAGE, uid("commit", "never stored"))
    services.archive.absolute(services.index.get_instance(missing[1]).file_path).unlink()
    path = services.archive.absolute(services.index.get_instance(damaged[1]).file_path)
    content = bytearray(path.read_bytes())
    content[-1] ^= 0xFF  # same size, other bytes: only the SHA-256 tells
    path.write_bytes(bytes(content))
    references = [good, missing, damaged, (MR_IMAGE_STORAGE, other_class[1]), unknown]
    reports = Reports()
    with associated(server, STORAGE_COMMITMENT,
                    evt_handlers=reports.handlers) as assoc:
        assert n_action(assoc, request(uid("commit", "fail"), references)) == 0x0000
        event_type, information, _ = reports.wait(server)
    assert event_type == 2
    assert [i.ReferencedSOPInstanceUID for i in information.ReferencedSOPSequence] == [good[1]]
    reasons = {i.ReferencedSOPInstanceUID: int(i.FailureReason)
               for i in information.FailedSOPSequence}
    assert reasons == {missing[1]: 0x0110, damaged[1]: 0x0110, other_class[1]: 0x0119,
                       unknown[1]: 0x0112}


def test_a_reused_transaction_uid_fails_every_instance(server: RunningServer,
                                                       tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2, Failure Reason 0x0131 Duplicate transaction UID.
    references = stored(server.services, tmp_path / "in", 1)
    transaction = uid("commit", "twice")
    for expected in (1, 2):
        reports = Reports()
        with associated(server, STORAGE_COMMITMENT,
                        evt_handlers=reports.handlers) as assoc:
            assert n_action(assoc, request(transaction, references)) == 0x0000
            event_type, information, _ = reports.wait(server)
        assert event_type == expected
    assert int(information.FailedSOPSequence[0].FailureReason) == 0x0131


@pytest.mark.parametrize(("change", "status"), [
    ({"TransactionUID": None}, 0x0115),
    ({"TransactionUID": "not a uid"}, 0x0115),
    ({"ReferencedSOPSequence": Sequence()}, 0x0115),
])
def test_a_malformed_request_is_invalid_argument_value(
        server: RunningServer, tmp_path: Path, change: dict[str, Any], status: int) -> None:
    # PS3.4 J.3.2.1.2 (Transaction UID, Referenced SOP Sequence); PS3.7 10.1.4.1.10: 0x0115.
    information = request(uid("commit", "bad"), stored(server.services, tmp_path / "in", 1))
    for keyword, value in change.items():
        if value is None:
            delattr(information, keyword)
        else:
            setattr(information, keyword, value)
    with associated(server, STORAGE_COMMITMENT) as assoc:
        assert n_action(assoc, information) == status
    assert Commitments(server.services.index).list() == []


def test_another_action_type_is_no_such_action(server: RunningServer) -> None:
    # PS3.4 J.3.2.1.1: Action Type ID 1 is the only one; PS3.7: 0x0123 No Such Action.
    with associated(server, STORAGE_COMMITMENT) as assoc:
        assert n_action(assoc, request(uid("commit", "type"), []), action_type=2) == 0x0123


def test_another_instance_is_invalid_sop_instance(server: RunningServer) -> None:
    # PS3.4 J.3.5: the well-known SOP Instance; anything else is 0x0117.
    with associated(server, STORAGE_COMMITMENT) as assoc:
        assert n_action(assoc, request(uid("commit", "inst"), []),
                        instance="1.2.840.10008.1.20.1.2") == 0x0117


def test_commitment_needs_the_permission(server_factory: Callable[..., RunningServer],
                                         tmp_path: Path) -> None:
    # PS3.7 C.5.4: 0x0124 for a peer not granted commitment.
    server = server_factory(peers=(Peer("MODALITY", services=frozenset({"echo", "store"})),))
    references = stored(server.services, tmp_path / "in", 1)
    with associated(server, STORAGE_COMMITMENT) as assoc:
        assert n_action(assoc, request(uid("commit", "auth"), references)) == 0x0124


def test_an_undeliverable_report_stays_pending(server: RunningServer, tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2: a report the requester refuses on its association, with no AE table
    # entry for a new one, stays owed (README: retried until commitment.expiry).
    references = stored(server.services, tmp_path / "in", 1)
    reports = Reports(answer=0x0110)
    with associated(server, STORAGE_COMMITMENT, evt_handlers=reports.handlers) as assoc:
        assert n_action(assoc, request(uid("commit", "nowhere"), references)) == 0x0000
        reports.wait(server)
    (record,) = Commitments(server.services.index).list()
    assert record.state == "pending" and record.attempts == 1
    assert "answered with status 272" in record.last_error
    assert "no [[remote]] entry for MODALITY" in record.last_error


def test_a_report_undelivered_past_the_expiry_is_given_up(
        server_factory: Callable[..., RunningServer], tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    # README: after `commitment.expiry` seconds an undelivered report is dropped, logged.
    server = server_factory(commitment_expiry=0.001)
    references = stored(server.services, tmp_path / "in", 1)
    reports = Reports(answer=0x0110)
    with associated(server, STORAGE_COMMITMENT, evt_handlers=reports.handlers) as assoc:
        assert n_action(assoc, request(uid("commit", "expired"), references)) == 0x0000
        reports.wait(server)
    (record,) = Commitments(server.services.index).list()
    assert record.state == "expired"
    assert any("expired undelivered" in r.getMessage() for r in caplog.records)


def test_a_pending_report_is_sent_after_a_crash(
        server_process: Callable[..., ServerProcess], receiver: Callable[..., Any],
        tmp_path: Path) -> None:
    # PS3.4 J.3.3.1.2 / J.3.6.2: the commitment survives the SCP; reports go out after restart.
    port = free_port()
    config = tmp_path / "pacs.toml"
    config.write_text(f'[commitment]\nretry_interval = 1\n[timeouts]\ndimse = 5\nacse = 5\n'
                      f'[[remote]]\nae_title = "MODALITY"\nhost = "127.0.0.1"\nport = {port}\n')
    pacs = server_process("--config", str(config))
    instance = make_file(tmp_path / "in", patient_id="PR", study="SR")
    ae = AE(ae_title="MODALITY")
    ae.add_requested_context(CT_IMAGE_STORAGE)
    ae.add_requested_context(STORAGE_COMMITMENT)
    refused = Reports(answer=0x0110)  # "not now": the report stays owed
    assoc = ae.associate("127.0.0.1", pacs.port, ae_title="MINIPACS",
                         evt_handlers=refused.handlers)
    assert assoc.is_established
    from pydicom import dcmread

    dataset = dcmread(instance)
    assert assoc.send_c_store(dataset).Status == 0x0000
    transaction = uid("commit", "crash")
    references = [(CT_IMAGE_STORAGE, str(dataset.SOPInstanceUID))]
    assert n_action(assoc, request(transaction, references)) == 0x0000
    refused.wait()
    assoc.release()
    pacs.kill()  # the report is owed: refused on the association, nobody listens at `port`
    _, reports = receiver(port)
    pacs.port = 0  # a free port again: the old one may be taken meanwhile
    pacs.start()
    event_type, information, _ = reports.wait()
    assert event_type == 1 and information.TransactionUID == transaction
    pacs.terminate()


def test_a_request_sent_while_the_report_awaits_its_answer_is_served(
        server: RunningServer, tmp_path: Path) -> None:
    # PS3.7 (DIMSE): the SCU may send its next request at any time; one that arrives while
    # the server waits for the N-EVENT-REPORT answer is still served afterwards.
    from io import BytesIO

    from pynetdicom.dimse_primitives import C_ECHO, N_ACTION
    from pynetdicom.dsutils import encode

    from pacs.dimse.destination import park_reactor

    references = stored(server.services, tmp_path / "in", 1)
    seen: list[str] = []
    contexts: dict[str, int] = {}

    def report(event: Any) -> tuple[int, None]:
        # pynetdicom serves N-EVENT-REPORT requests in a thread of their own: from here the
        # C-ECHO leaves before the answer, so it reaches a server waiting for that answer.
        seen.append("N_EVENT_REPORT")
        echo = C_ECHO()
        echo.MessageID = 2
        echo.AffectedSOPClassUID = "1.2.840.10008.1.1"
        event.assoc.dimse.send_msg(echo, contexts["1.2.840.10008.1.1"])
        return 0x0000, None

    with associated(server, STORAGE_COMMITMENT, "1.2.840.10008.1.1",
                    evt_handlers=[(evt.EVT_N_EVENT_REPORT, report)]) as assoc:
        contexts.update({str(cx.abstract_syntax): cx.context_id
                         for cx in assoc.accepted_contexts})
        assert park_reactor(assoc)  # the test reads the responses itself
        try:
            action = N_ACTION()
            action.MessageID = 1
            action.RequestedSOPClassUID = STORAGE_COMMITMENT
            action.RequestedSOPInstanceUID = STORAGE_COMMITMENT_INSTANCE
            action.ActionTypeID = 1
            action.ActionInformation = BytesIO(encode(
                request(uid("commit", "interleaved"), references), True, True))
            assoc.dimse.send_msg(action, contexts[STORAGE_COMMITMENT])
            while "C_ECHO" not in seen:
                _, message = assoc.dimse.msg_queue.get(timeout=WAIT)
                assert message is not None, f"association closed after {seen}"
                seen.append(type(message).__name__)
        finally:
            assoc._reactor_checkpoint.set()
    assert seen == ["N_ACTION", "N_EVENT_REPORT", "C_ECHO"]
    server.services.commitments.drain(WAIT)
    assert [r.state for r in Commitments(server.services.index).list()] == ["reported"]
