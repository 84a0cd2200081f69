"""Malformed DIMSE command sets on an established association: an A-ABORT, one log line, a
closed connection, no partial file and no traceback; the server carries on. Before, pynetdicom
raised inside its DUL thread, which died with the connection still open and its slot held."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest
from pynetdicom.sop_class import Verification

from pacs.dimse.server import RunningServer
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE
from tests.integration.raw_peer import (
    A_ABORT,
    associate,
    command_set,
    p_data,
    read_until_closed,
    wait_idle,
)

pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")

# A C-STORE-RQ announcing a data set (PS3.7 9.3.1.1), to be broken one element at a time.
STORE = {"AffectedSOPClassUID": CT_IMAGE_STORAGE, "CommandField": 0x0001, "MessageID": 1,
         "Priority": 0, "CommandDataSetType": 0x0000}
UID = "1.2.826.0.1.3680043.10.1071.5.5"
SOME_DATA = b"\x08\x00\x16\x00\x1a\x00\x00\x00" + CT_IMAGE_STORAGE.encode().ljust(26, b"\x00")
ECHO = {"AffectedSOPClassUID": Verification, "CommandField": 0x0030, "MessageID": 2,
        "CommandDataSetType": 0x0101}


def _without(command: dict[str, object], keyword: str) -> dict[str, object]:
    return {key: value for key, value in command.items() if key != keyword}


CASES = {
    # PS3.7 9.3.1.1: Affected SOP Instance UID is mandatory in a C-STORE-RQ.
    "missing Affected SOP Instance UID": [
        p_data(command_set(**STORE), command=True), p_data(SOME_DATA, command=False)],
    # PS3.5 9.1: a UID is at most 64 characters.
    "Affected SOP Instance UID over 64 characters": [
        p_data(command_set(**STORE, AffectedSOPInstanceUID="1." + "2" * 70), command=True),
        p_data(SOME_DATA, command=False)],
    # PS3.7 E.1: Command Field says which message this is.
    "missing Command Field": [
        p_data(command_set(**_without(STORE, "CommandField"), AffectedSOPInstanceUID=UID),
               command=True)],
    # PS3.8 E.2: the data set announced by a command follows it; here a new command comes.
    "a command where the announced data set was due": [
        p_data(command_set(**STORE, AffectedSOPInstanceUID=UID), command=True),
        p_data(command_set(**ECHO), command=True)],
    "a data set without a command": [p_data(SOME_DATA, command=False)],
    # PS3.7 9.3.5.1: Message ID is mandatory in a C-ECHO-RQ.
    "a C-ECHO-RQ without Message ID": [
        p_data(command_set(**_without(ECHO, "MessageID")), command=True)],
}


def _check_one_clean_line(caplog: pytest.LogCaptureFixture, port: int) -> str:
    lines = [r.getMessage() for r in caplog.records
             if r.name.startswith("pacs") and r.levelno >= logging.WARNING
             and f":{port}:" in r.getMessage()]
    assert len(lines) == 1, lines
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    assert not [r.getMessage() for r in caplog.records
                if r.name.startswith("pynetdicom") and r.levelno >= logging.ERROR]
    return lines[0]


@pytest.mark.parametrize("case", CASES)
def test_malformed_command_set_is_aborted_with_one_line_and_nothing_left(
    server: RunningServer, incoming: Path, caplog: pytest.LogCaptureFixture, case: str,
) -> None:
    connection = associate(server, CT_IMAGE_STORAGE)
    port = connection.getsockname()[1]
    for message in CASES[case]:
        connection.sendall(message)
    closed = read_until_closed(connection, limit=15)
    assert closed.pdu_types == [A_ABORT]
    assert wait_idle(server)
    line = _check_one_clean_line(caplog, port)
    assert "A-ABORT sent" in line
    assert list(incoming.iterdir()) == []
    assert server.services.index.stats().instances == 0
    host, server_port = server.address
    assert run_tool("echoscu", ["-aec", "MINIPACS", host, str(server_port)]).returncode == 0


# A data set announced and never sent: the network timeout (1 s here) ends the association
# with an A-ABORT, and the partial data set is not kept.
def test_data_set_announced_and_never_sent_is_aborted_after_the_network_timeout(
    server_factory: Callable[..., RunningServer], incoming: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server = server_factory(network_timeout=1)
    connection = associate(server, CT_IMAGE_STORAGE)
    port = connection.getsockname()[1]
    connection.sendall(p_data(command_set(**STORE, AffectedSOPInstanceUID=UID), command=True))
    connection.sendall(p_data(SOME_DATA, command=False, last=False))
    closed = read_until_closed(connection, limit=15)
    assert closed.pdu_types == [A_ABORT]
    assert wait_idle(server)
    line = _check_one_clean_line(caplog, port)
    assert "partial data set discarded" in line
    assert list(incoming.iterdir()) == []
