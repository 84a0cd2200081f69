"""The association's two threads block instead of polling (issue #12; PS3.8 9.2 is the state
machine they drive): an idle association's DUL thread sits in select() on its socket and its
wake-up fd, its reactor in a wait on its doorbell, and work given to either wakes it."""

from __future__ import annotations

import select
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from pynetdicom.sop_class import Verification

from pacs.dimse.pynetdicom_internals import reactors
from pacs.dimse.server import RunningServer
from tests.conftest import scu


def _innermost_functions(thread: threading.Thread) -> list[str]:
    frame = sys._current_frames().get(thread.ident or -1)
    names = []
    while frame is not None:
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def _until(condition, limit: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture
def idle_association(server: RunningServer) -> Iterator[object]:
    """One established association from a pynetdicom SCU, after one C-ECHO, then silent."""
    association = scu(Verification).associate(*server.address, ae_title="MINIPACS")
    assert association.is_established
    assert association.send_c_echo().Status == 0x0000
    assert _until(lambda: len(server.ae.active_associations) == 1)
    yield server.ae.active_associations[0]
    association.release()


def test_idle_association_dul_blocks_in_select(idle_association) -> None:  # type: ignore[no-untyped-def]
    # PS3.8 9.2 Sta6: nothing to read or send, so the DUL thread waits for the socket or a ring.
    dul = idle_association.dul
    assert _until(lambda: dul.wake_up.sleeping and "_sleep" in _innermost_functions(dul))


def test_idle_association_reactor_waits_on_its_doorbell(idle_association) -> None:  # type: ignore[no-untyped-def]
    assert _until(lambda: "run_association_reactor" in _innermost_functions(idle_association)
                  and _innermost_functions(idle_association)[0] == "wait")


def test_idle_association_still_serves_a_request(server: RunningServer) -> None:
    # After the threads have gone to sleep, a C-ECHO (PS3.7 9.3.5) wakes them and is answered.
    association = scu(Verification).associate(*server.address, ae_title="MINIPACS")
    try:
        assert _until(lambda: all(a.dul.wake_up.sleeping for a in server.ae.active_associations))
        assert association.send_c_echo().Status == 0x0000
    finally:
        association.release()
    assert _until(lambda: not server.ae.active_associations)


def test_wake_up_writes_only_when_its_thread_sleeps() -> None:
    wake_up = reactors.WakeUp()
    try:
        wake_up.ring()  # awake: no system call, nothing to drain

        assert select.select([wake_up], [], [], 0)[0] == []
        wake_up.sleeping = True
        wake_up.ring()
        assert select.select([wake_up], [], [], 0)[0] == [wake_up]
        wake_up.drain()
        assert select.select([wake_up], [], [], 0)[0] == []
    finally:
        wake_up.close()
    wake_up.ring()  # after close: ignored, never written to a reused descriptor


# PS3.8 AE-7 and AR-4: the A-ASSOCIATE-AC and the A-RELEASE-RP are written by the thread that
# decided them (no hand-off to the DUL thread, which may be asleep), and the association goes
# through Sta6 to its release as before; the DUL thread itself starts before the association's.
def test_association_answers_are_sent_by_the_deciding_thread(
        server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from pynetdicom.dul import DULServiceProvider

    senders: dict[str, bool] = {}
    send = DULServiceProvider._send

    def observed(self, pdu) -> None:  # type: ignore[no-untyped-def]
        senders[type(pdu).__name__] = isinstance(threading.current_thread(),
                                                 reactors.EventDrivenDUL)
        send(self, pdu)

    monkeypatch.setattr(DULServiceProvider, "_send", observed)
    association = scu(Verification).associate(*server.address, ae_title="MINIPACS")
    assert association.is_established
    assert association.send_c_echo().Status == 0x0000
    association.release()
    assert association.is_released
    assert _until(lambda: "A_RELEASE_RP" in senders)
    assert senders["A_ASSOCIATE_AC"] is False
    assert senders["A_RELEASE_RP"] is False
