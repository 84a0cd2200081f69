"""C-MOVE over a destination association kept from an earlier C-MOVE that died unnoticed.

PS3.4 C.4.2.3: the C-STORE sub-operations go over an association of their own; C.4.2.1.5:
the responses count completed, failed, warning and remaining sub-operations. A kept
association whose peer is gone (restarted, killed, frozen, its connection dropped) fails its
first C-STORE without a status from the peer: that sub-operation goes again, once, on a new
association, and the C-MOVE carries on with exact counts. A new association that fails is a
failure as always, and a loss after the kept association has answered is an ordinary loss.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pacs.dimse.server import RunningServer
from tests.dcmtk import run_tool
from tests.integration.move_support import (
    LAYOUT,
    STUDY_S1,
    STUDY_S2,
    Receiver,
    Response,
    StoreSCP,
    check_counts,
    move,
    moving_to,
    populate,
    stored_data_set,
)

Factory = Callable[..., RunningServer]
RETRY_LINE = "the association kept from an earlier request is lost"


def _final(responses: list[Response]) -> tuple[int, int | None, int | None]:
    return responses[-1].status, responses[-1].completed, responses[-1].failed


def _movescu(server: RunningServer, study: str) -> str:
    host, port = server.address
    result = run_tool("movescu", ["-v", "-aet", "MOVESCU", "-aec", "MINIPACS", "-aem", "DEST",
                                  "-S", "-k", "QueryRetrieveLevel=STUDY",
                                  "-k", f"StudyInstanceUID={study}", host, str(port)],
                      timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def _children(pid: int) -> list[int]:
    """The processes `pid` forked (storescp --fork: one per association)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children]


def _unread_bytes(port: int) -> int:
    """Bytes waiting unread in the receive queue of an established loopback connection whose
    local port is `port` (the destination's side of our association)."""
    total = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
            total += int(fields[4].split(":")[1], 16)
    return total


def _wait_for(condition: Callable[[], bool], within: float = 30) -> bool:
    deadline = time.monotonic() + within
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)
    return condition()


class FrozenPeer:
    """The storescp child process serving our kept association, stopped (SIGSTOP): to us the
    connection is open and sound, but nothing on the other side reads or answers."""

    def __init__(self, scp: StoreSCP):
        [self.pid] = _children(scp.process.pid)
        self.port = scp.port
        os.kill(self.pid, signal.SIGSTOP)

    def kill_once_our_request_waits(self) -> None:
        """SIGKILL once our C-STORE sits unread at the peer: it dies after we took the
        association and sent on it (the kernel answers what follows with a reset)."""
        assert _wait_for(lambda: _unread_bytes(self.port) > 0), "no C-STORE reached the peer"
        self.kill()

    def kill(self) -> None:
        """End the stopped child (SIGKILL works on a stopped process)."""
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def _move_while(server: RunningServer, query: Any,
                meanwhile: Callable[[], None]) -> list[Response]:
    """C-MOVE in a thread of its own while `meanwhile` runs here; its responses."""
    found: list[list[Response]] = []
    thread = threading.Thread(target=lambda: found.append(move(server, query)), daemon=True)
    thread.start()
    try:
        meanwhile()
    finally:
        thread.join(timeout=60)
    assert found, "the C-MOVE did not finish"
    return found[0]


# PS3.4 C.4.2.3: a destination restarted on its port between two C-MOVEs (DCMTK movescu to
# DCMTK storescp) gets both; the second C-MOVE's instances go over a new association.
def test_a_destination_restarted_between_two_moves_receives_both(
    server_factory: Factory, storescp: Callable[..., StoreSCP], tmp_path: Path,
) -> None:
    first = storescp()
    server = moving_to(server_factory, first.port, association_close_delay=30)
    populate(server.services, tmp_path / "in")
    assert "Received Final Move Response (Success)" in _movescu(server, LAYOUT.study_s1)
    assert len(first.received()) == 5
    first.stop()
    second = storescp(port=first.port)
    assert "Received Final Move Response (Success)" in _movescu(server, LAYOUT.study_s1)
    received = second.received()
    assert len(received) == 5
    for sop_instance_uid, data_set in received.items():
        assert data_set == stored_data_set(server.services, sop_instance_uid)


# PS3.4 C.4.2.3, C.4.2.1.5: the peer of the kept association dies after we took it and sent
# the first C-STORE on it (killed), or never answers it (frozen, as behind a dropped NAT
# entry): that sub-operation goes again on a new association and every instance arrives;
# every response counts all five, none failed.
@pytest.mark.parametrize("death", ["killed", "frozen"])
def test_a_kept_association_lost_unnoticed_is_replaced_and_the_move_completes(
    death: str, server_factory: Factory, storescp: Callable[..., StoreSCP], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scp = storescp("--fork")
    server = moving_to(server_factory, scp.port, association_close_delay=30, dimse_timeout=2)
    populate(server.services, tmp_path / "in")
    assert _final(move(server, STUDY_S2)) == (0x0000, 1, 0)
    peer = FrozenPeer(scp)
    try:
        with caplog.at_level(logging.WARNING, logger="pacs.retrieve"):
            if death == "killed":
                responses = _move_while(server, STUDY_S1, peer.kill_once_our_request_waits)
            else:
                responses = move(server, STUDY_S1)  # the DIMSE timeout passes first
    finally:
        peer.kill()
    assert _final(responses) == (0x0000, 5, 0)
    check_counts(responses, 5)
    assert [r.remaining for r in responses if r.status == 0xFF00] == [4, 3, 2, 1]
    received = scp.received()
    for sop_instance_uid in (r.sop_instance_uid for r in _records(server, LAYOUT.study_s1)):
        assert received[sop_instance_uid] == stored_data_set(server.services, sop_instance_uid)
    retries = [r for r in caplog.records if RETRY_LINE in r.getMessage()]
    assert len(retries) == 1
    assert f"DEST@127.0.0.1:{scp.port}" in retries[0].getMessage()


# PS3.4 C.4.2.1.5: when the new association cannot be opened either (the destination is gone
# altogether), every sub-operation fails once, with its UID in the list: no second retry.
def test_a_lost_kept_association_whose_destination_is_gone_fails_every_sub_operation(
    server_factory: Factory, storescp: Callable[..., StoreSCP], tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scp = storescp("--fork")
    server = moving_to(server_factory, scp.port, association_close_delay=30)
    populate(server.services, tmp_path / "in")
    assert _final(move(server, STUDY_S2)) == (0x0000, 1, 0)
    peer = FrozenPeer(scp)
    try:
        scp.stop()  # the listener is gone; the frozen child still holds our connection
        with caplog.at_level(logging.WARNING, logger="pacs.retrieve"):
            responses = _move_while(server, STUDY_S1, peer.kill_once_our_request_waits)
    finally:
        peer.kill()
    assert _final(responses) == (0xA702, 0, 5)
    check_counts(responses, 5)
    expected = [r.sop_instance_uid for r in _records(server, LAYOUT.study_s1)]
    assert sorted(responses[-1].failed_uids or []) == sorted(expected)
    assert len([r for r in caplog.records if RETRY_LINE in r.getMessage()]) == 1


# PS3.4 C.4.2.1.5: a kept association that has answered in this C-MOVE and is then lost is
# an ordinary loss: the sub-operation in flight and the rest fail, nothing goes twice.
def test_a_kept_association_lost_after_answering_fails_the_rest_as_a_new_one_would(
    server_factory: Factory, receiver: Callable[..., Receiver], tmp_path: Path,
) -> None:
    destination = receiver(abort_after=6)  # aborts on the second C-STORE of the second C-MOVE
    server = moving_to(server_factory, destination.port, association_close_delay=30)
    populate(server.services, tmp_path / "in")
    assert _final(move(server, STUDY_S1)) == (0x0000, 5, 0)
    responses = move(server, STUDY_S1)
    assert _final(responses) == (0xB000, 1, 4)
    check_counts(responses, 5)
    assert destination.associations == 1
    assert len(destination.received) == 7


def _records(server: RunningServer, study: str) -> list[Any]:
    return server.services.index.instances_for_retrieve(study_uids=[study])
