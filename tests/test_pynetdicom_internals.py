"""DESIGN.md rule 9: the pynetdicom internals minipacs replaces or tunes are named in one place,
dimse/pynetdicom_internals, checked at import against the pinned version; these tests fail
when one of them moves, and when another module reaches for them."""

from __future__ import annotations

import logging
import re
import sys
from pathlib import Path

import pynetdicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID
from pynetdicom import AE, dimse_messages, fsm, pdu_items, presentation
from pynetdicom.association import Association
from pynetdicom.dsutils import create_file_meta
from pynetdicom.transport import AssociationServer, AssociationSocket

import pacs.dimse.pynetdicom_internals as internals
from pacs.dimse.pynetdicom_internals import (
    commands,
    connection,
    handshakes,
    messages,
    reactors,
    receiving,
    sending,
    servers,
    uids,
)

REPO = Path(__file__).resolve().parent.parent
INTERNALS = REPO / "pacs" / "dimse" / "pynetdicom_internals"


def test_installed_pynetdicom_is_the_pinned_one() -> None:
    assert pynetdicom.__version__ == internals.PINNED_VERSION
    assert f"pynetdicom=={internals.PINNED_VERSION}" in (REPO / "setup.cfg").read_text()


def test_every_hooked_name_is_where_the_hooks_expect_it() -> None:
    assert internals.check_pynetdicom() == []


def test_another_pynetdicom_version_is_reported() -> None:
    assert internals.check_pynetdicom("3.1.0") == [
        f"pynetdicom 3.1.0 is installed, minipacs is written for {internals.PINNED_VERSION}"]


@pytest.mark.parametrize(("owner", "name"), [
    (owner, name) for owner, names in internals.REQUIRED_NAMES.items() for name in names])
def test_a_moved_name_is_reported(owner: str, name: str) -> None:
    probes = internals._probes()
    probes[owner] = _Without(probes[owner], name)
    assert internals.check_pynetdicom(probes=probes) == [f"{owner}.{name} is gone"]


def test_a_changed_ps38_transition_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(fsm.TRANSITION_TABLE, ("Evt19", "Sta2"), "AA-8")
    assert internals.check_pynetdicom() == ["PS3.8 transition ('Evt19', 'Sta2') is no longer AA-1"]


def test_every_association_gets_the_hardened_providers() -> None:
    for mode in ("acceptor", "requestor"):
        association = Association(AE(), mode)
        assert isinstance(association.dul, connection.HardenedDUL)
        assert isinstance(association.dul.state_machine, connection.GuardedStateMachine)
        assert isinstance(association.dimse, messages.HardenedDIMSE)


def test_transport_and_polling_loops_are_replaced() -> None:
    assert AssociationSocket.recv is connection._bounded_recv
    assert AssociationSocket.send is connection._bounded_send
    assert Association._run_reactor is reactors.run_association_reactor
    assert issubclass(connection.HardenedDUL, reactors.EventDrivenDUL)
    assert pynetdicom._config.STORE_RECV_CHUNKED_DATASET is True


# Identifiers are not decoded and walked for log lines pynetdicom does not print.
def test_identifiers_are_not_walked_for_log_lines() -> None:
    assert pynetdicom._config.LOG_REQUEST_IDENTIFIERS is False
    assert pynetdicom._config.LOG_RESPONSE_IDENTIFIERS is False


# The accept loop does not stop every association for a full garbage collection.
def test_accept_loop_forces_no_garbage_collection() -> None:
    assert AssociationServer.service_actions is servers._no_forced_collection


def test_no_other_module_reaches_for_pynetdicom_internals() -> None:
    private = {name for names in internals.REQUIRED_NAMES.values() for name in names
               if name.startswith("_")}
    private |= {"msg_queue", "to_user_queue", "to_provider_queue", "event_queue",
                "state_machine", "artim_timer", "_config"}
    # `self._send` and the like are a class's own attributes, not pynetdicom's.
    pattern = re.compile(r"(?<!\bself)\.(" + "|".join(sorted(private)) + r")\b"
                         r"|\bimport _config\b|\b_config\.")
    offenders = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                 for path in sorted((REPO / "pacs").rglob("*.py"))
                 if INTERNALS not in path.parents and "bench" not in path.parts
                 for number, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line)]
    assert offenders == []


class _Without:
    """`original` with one attribute gone, as if pynetdicom had renamed it."""

    def __init__(self, original: object, missing: str):
        self._original = original
        self._missing = missing

    def __getattr__(self, name: str) -> object:
        if name == self._missing:
            raise AttributeError(name)
        return getattr(self._original, name)


# PS3.10 7.1: the File Meta Information of a received file, encoded without pydicom, is the
# bytes pydicom writes, for UIDs of odd and even length and every transfer syntax we accept.
@pytest.mark.parametrize("sop_instance_uid", ["1.2.3.4", "1.2.3.45", "1." + "2" * 62])
@pytest.mark.parametrize("transfer_syntax", ["1.2.840.10008.1.2", "1.2.840.10008.1.2.1",
                                             "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.1.99"])
def test_received_file_meta_is_what_pydicom_writes(sop_instance_uid: str,
                                                   transfer_syntax: str) -> None:
    values = dict(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid=sop_instance_uid,
                  transfer_syntax=transfer_syntax)
    ours, theirs = DicomBytesIO(), DicomBytesIO()
    receiving.write_file_meta(ours, receiving.file_meta_values(**values))
    write_file_meta_info(theirs, create_file_meta(**values))
    assert ours.getvalue() == theirs.getvalue()


def test_received_file_meta_with_a_value_pydicom_encodes_otherwise_is_left_to_pydicom() -> None:
    values = dict(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3\u00e9",
                  transfer_syntax="1.2.840.10008.1.2.1")
    assert receiving.encode_file_meta(receiving.file_meta_values(**values)) is None
    ours, theirs = DicomBytesIO(), DicomBytesIO()
    receiving.write_file_meta(ours, receiving.file_meta_values(**values))
    write_file_meta_info(theirs, create_file_meta(**values))
    assert ours.getvalue() == theirs.getvalue()


# The receive fast path hashes a received file from its first byte without reading back the
# preamble and File Meta Information pynetdicom wrote: what it notes is what the file holds.
def test_received_file_notes_the_bytes_it_starts_with(tmp_path: Path) -> None:
    values = dict(sop_class_uid="1.2.840.10008.5.1.4.1.1.2", sop_instance_uid="1.2.3.45",
                  transfer_syntax="1.2.840.10008.1.2.1")
    with receiving.received_data_set_file(suffix=".dcm", dir=str(tmp_path)) as received:
        received.write(b"\x00" * 128 + b"DICM")
        receiving.write_file_meta(received, receiving.file_meta_values(**values))
        noted = getattr(received, receiving._WRITTEN_PREFIX)
    assert noted == Path(received.name).read_bytes()


# A received data set's file: new (never an existing name), private to this user, in the
# archive's temp folder, left in place when closed (the store renames it), as pynetdicom's
# NamedTemporaryFile(delete=False) was.
def test_received_data_set_file_is_new_private_and_kept(tmp_path: Path) -> None:
    first = receiving.received_data_set_file(suffix=".dcm", dir=str(tmp_path))
    second = receiving.received_data_set_file(suffix=".dcm", dir=str(tmp_path))
    first.write(b"\x00" * 132)
    first.file.flush()
    first.close()
    second.close()
    path = Path(first.name)
    assert path.parent == tmp_path and path.suffix == ".dcm" and first.name != second.name
    assert path.read_bytes() == b"\x00" * 132
    assert path.stat().st_mode & 0o777 == 0o600


def test_received_data_sets_go_to_a_plain_file() -> None:
    assert dimse_messages.NamedTemporaryFile is receiving.received_data_set_file


def test_received_files_get_their_file_meta_from_our_encoder() -> None:
    assert dimse_messages.create_file_meta is receiving.file_meta_values
    assert dimse_messages.write_file_meta_info is receiving.write_file_meta


# The store's fsync finds most of a received data set on disk already: its writeback is started
# while it arrives (Linux sync_file_range), and starting it on a file changes nothing in it.
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sync_file_range is Linux's")
def test_received_data_sets_start_their_writeback_while_arriving(tmp_path: Path) -> None:
    assert receiving.start_writeback is not None
    path = tmp_path / "received.dcm"
    with open(path, "wb") as received:
        received.write(b"\x01" * 300_000)
        received.flush()
        receiving.start_writeback(received.fileno())
    assert path.read_bytes() == b"\x01" * 300_000


# PS3.7 9.3.2.2: a C-FIND response's command set made from the per-process template is the one
# encoded whole, for any Message ID Being Responded To.
@pytest.mark.parametrize("status, has_data", [(0xFF00, True), (0xFF01, True), (0x0000, False),
                                              (0xFE00, False)])
def test_find_response_commands_from_the_template_are_encoded_whole(status: int,
                                                                      has_data: bool) -> None:
    sop_class = "1.2.840.10008.5.1.4.1.2.2.1"
    for message_id in (1, 0x1234, 0xFFFF):
        whole = commands.encode_command({
            "AffectedSOPClassUID": sop_class, "CommandField": 0x8020,
            "CommandDataSetType": 0x0001 if has_data else 0x0101,
            "MessageIDBeingRespondedTo": message_id, "Status": status})
        assert sending._find_command(sop_class, status, has_data, message_id) == whole


# PS3.5 9.1: UID checks are remembered, not skipped. Every module that took pynetdicom's
# set_uid/validate_uid by name gets the remembering ones, and pydicom's UID.is_valid too.
def test_uid_checks_are_the_remembering_ones() -> None:
    for module, names in uids._USERS.items():
        for name in names:
            assert getattr(module, name) is uids._REPLACEMENTS[name], (module.__name__, name)
    assert UID.is_valid.fget is uids.remembered_is_valid


@pytest.mark.parametrize("value", ["1.2.840.10008.5.1.4.1.1.2", b"1.2.840.10008.1.2.1",
                                   UID("1.2.840.10008.1.2")])
def test_a_conformant_uid_comes_back_equal_every_time(value: str | bytes) -> None:
    text = value.decode() if isinstance(value, bytes) else str(value)
    for _ in range(3):
        result = pdu_items.set_uid(value, "SOP Class UID")
        assert isinstance(result, UID)
        assert result == text
        assert result.is_valid
        assert presentation.validate_uid(result)


# A non-conformant UID is warned about each time it is set; an invalid one refused each time.
def test_a_non_conformant_uid_is_warned_about_every_time(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="pynetdicom"):
            result = pdu_items.set_uid("1.02.3", "SOP Class UID")
        assert result == "1.02.3"
        assert not result.is_valid
        assert "Non-conformant" in caplog.text
    for enforce in (False, True):  # pynetdicom's setting: conformance, or 1-64 characters
        monkeypatch.setattr(pynetdicom._config, "ENFORCE_UID_CONFORMANCE", enforce)
        assert presentation.validate_uid(UID("1.02.3")) is (not enforce)


def test_an_invalid_uid_is_refused_every_time() -> None:
    for _ in range(2):
        with pytest.raises(ValueError):
            pdu_items.set_uid("1." + "2" * 70, "SOP Class UID")


def test_a_padded_uid_is_not_remembered_as_given() -> None:
    padded = "1.2.840.10008.1.2.5 "
    assert pdu_items.set_uid(padded, "Transfer Syntax Name") == padded.strip()
    assert padded not in uids._CONFORMANT


def test_the_remembered_uids_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(uids, "_LIMIT", 4)
    uids._CONFORMANT.clear()
    for number in range(10):
        assert pdu_items.set_uid(f"1.2.3.{number}", "SOP Instance UID") == f"1.2.3.{number}"
        assert len(uids._CONFORMANT) <= 4


# Association set-up remembered (handshakes.py): the three hooks are in place.
def test_association_requests_decode_and_answers_encode_the_remembering_way() -> None:
    from pynetdicom import acse, dul

    assert dul._PDU_TYPES[b"\x01"][0] is handshakes.RememberedAssociateRQ
    assert fsm.A_ASSOCIATE_AC is handshakes.remembered_associate_ac
    assert acse.negotiate_as_acceptor is handshakes.remembered_negotiation


def _request(calling: str, contexts: int = 1) -> bytes:
    """An A-ASSOCIATE-RQ from `calling` proposing `contexts` contexts in every syntax."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, build_context
    from pynetdicom.pdu import A_ASSOCIATE_RQ

    from tests.integration.raw_peer import associate_request

    request = A_ASSOCIATE_RQ()
    request.decode(associate_request("1.2.840.10008.1.1", calling=calling))
    primitive = request.to_primitive()
    proposed = []
    for number in range(contexts):
        context = build_context("1.2.840.10008.1.1", list(ALL_TRANSFER_SYNTAXES))
        context.context_id = 2 * number + 1
        proposed.append(context)
    primitive.presentation_context_definition_list = proposed
    return bytes(A_ASSOCIATE_RQ(primitive).encode())


# PS3.8 9.3.2: a request decoded from remembered bytes is the request pynetdicom decodes.
def test_a_remembered_request_decodes_to_what_pynetdicom_decodes() -> None:
    from pynetdicom.pdu import A_ASSOCIATE_RQ

    request = _request("DECODEME")
    first, again, plain = (handshakes.RememberedAssociateRQ(),
                           handshakes.RememberedAssociateRQ(), A_ASSOCIATE_RQ())
    first.decode(request)
    first.to_primitive()
    again.decode(request)
    plain.decode(request)
    primitive, expected = again.to_primitive(), plain.to_primitive()
    assert again.encode() == plain.encode() == request
    assert (primitive.calling_ae_title, primitive.called_ae_title) == \
        (expected.calling_ae_title, expected.called_ae_title)
    assert [(cx.context_id, cx.abstract_syntax, cx.transfer_syntax)
            for cx in primitive.presentation_context_definition_list] == \
        [(cx.context_id, cx.abstract_syntax, cx.transfer_syntax)
         for cx in expected.presentation_context_definition_list]
    assert primitive.presentation_context_definition_list is not \
        first.to_primitive().presentation_context_definition_list


# Memory stays bounded: a large request is decoded every time, and the table has a limit.
def test_remembered_requests_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handshakes, "_LIMIT", 4)
    monkeypatch.setattr(handshakes, "_DECODED", handshakes._Table())
    for number in range(10):
        pdu = handshakes.RememberedAssociateRQ()
        pdu.decode(_request(f"CALLER{number}"))
        pdu.to_primitive()
        assert len(handshakes._DECODED) <= 4
    large = _request("LARGE", contexts=120)
    assert len(large) > handshakes.LARGEST_REMEMBERED
    pdu = handshakes.RememberedAssociateRQ()
    pdu.decode(large)
    pdu.to_primitive()
    assert large not in handshakes._DECODED._entries
