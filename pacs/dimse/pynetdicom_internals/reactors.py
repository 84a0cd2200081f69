"""pynetdicom's two threads per association, event-driven: the DUL blocks on its socket and a
wake-up fd, the association reactor on a doorbell; neither sleeps in a loop.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included), the
standard library and pynetdicom_internals.direct (requests served without a service class).

pynetdicom 3.0.4 polls. Its DUL thread looks at its queues and select()s its socket with a zero
timeout, and sleeps 1 ms when it found nothing; the association reactor sleeps 1 ms on every
loop. So every DIMSE message waits for both sleeps, and an idle association wakes its two
threads thousands of times a second. Here:
- the DUL thread select()s on its socket and on a wake-up fd, at most until the ARTIM timer
  expires (PS3.8 9.1.5). Whoever gives it work (a primitive to send, an event, a kill) puts it
  on a queue that rings the fd, and only when the thread sleeps (one system call at most);
- the association reactor does what pynetdicom's does, in the same order (serve a DIMSE
  message; answer an A-RELEASE-RQ; end on an A-ABORT, a dead DUL or the idle timer), and
  between rounds waits on a doorbell, rung by the DIMSE message queue, the DUL's to-user queue,
  a kill or a park, at most until the idle (network) timer expires.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import ssl
import threading
from collections.abc import Callable
from typing import Any

from pynetdicom import evt
from pynetdicom.association import Association
from pynetdicom.dul import DULServiceProvider
from pynetdicom.pdu import A_ABORT_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, A_P_ABORT, A_RELEASE

from pacs.dimse.pynetdicom_internals.direct import direct_handler, serve_direct

# Logged as pynetdicom's reactor logs them: operators and our one-line filter know these lines.
_ASSOCIATION_LOG = logging.getLogger("pynetdicom.association")

# A safety net, not a poll: even with no timer running a sleeping thread looks around this
# often (an idle association: one wake-up a minute).
LONGEST_SLEEP = 60.0


class WakeUp:
    """A file descriptor that makes a sleeping select() return: `ring` writes to it (only when
    its thread said it sleeps), the thread `drain`s it once awake."""

    def __init__(self) -> None:
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._lock = threading.Lock()  # ring and close: never write to a closed (reused) fd
        self.sleeping = False

    def fileno(self) -> int:
        """The fd for select()."""
        return self._fd

    def ring(self) -> None:
        """Wake the thread if it sleeps (or is about to: it re-checks its queues first)."""
        if self.sleeping:
            with self._lock:
                if self._fd >= 0:
                    os.eventfd_write(self._fd, 1)

    def drain(self) -> None:
        """Reset the fd after a wake-up."""
        try:
            os.eventfd_read(self._fd)
        except BlockingIOError:
            pass

    def close(self) -> None:
        """Release the fd; later rings do nothing."""
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


class WakingQueue(queue.Queue):  # type: ignore[type-arg]
    """A queue whose `put` also calls `wake` (a ring, or setting a doorbell)."""

    def __init__(self, wake: Callable[[], Any]):
        super().__init__()
        self.wake = wake

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Put `item`, then wake the consumer."""
        super().put(item, block, timeout)
        self.wake()


def doorbell(assoc: Any) -> threading.Event:
    """The event the association's reactor waits on between rounds (made on first use: the
    DUL and DIMSE providers ask for it while the association is built, in one thread)."""
    bell: threading.Event | None = assoc.__dict__.get("minipacs_doorbell")
    if bell is None:
        bell = assoc.minipacs_doorbell = threading.Event()
    return bell


def end_broken_connection(dul: Any) -> None:
    """After a failure the state machine cannot handle: A-ABORT if possible, close, and tell
    the association (an A-P-ABORT indication; DIMSE waiters get their end marker)."""
    if dul.socket is not None and dul.socket.socket is not None:
        abort = A_ABORT_RQ()
        abort.source, abort.reason_diagnostic = 0x02, 0x00
        try:
            dul._send(abort)
        except OSError:
            pass
        finally:
            dul.socket.close()
    abort_indication = A_P_ABORT()
    abort_indication.provider_reason = 0x00
    dul.to_user_queue.put(abort_indication)
    dul.assoc.dimse.msg_queue.put((None, None))


# The answers a user thread may send itself: (state, primitive type, accepted/affirmative).
_INLINE_ANSWERS = {"Sta3": A_ASSOCIATE, "Sta8": A_RELEASE}


def _answers_now(dul: Any, primitive: Any) -> bool:
    """Whether `primitive` is the answer (A-ASSOCIATE accept, A-RELEASE response) the DUL's
    state awaits from its user."""
    expected = _INLINE_ANSWERS.get(dul.state_machine.current_state)
    return expected is not None and type(primitive) is expected \
        and primitive.result is not None \
        and (expected is not A_ASSOCIATE or primitive.result == 0x00)


def _sent_inline(dul: Any, primitive: Any) -> bool:
    """Run the DUL's step for an answer `_answers_now` accepts in the calling thread (see
    EventDrivenDUL.send_pdu); False, having done nothing, when it may not."""
    if not dul.step_lock.acquire(blocking=False):
        return False
    try:
        if not _answers_now(dul, primitive) or dul.event_queue.queue \
                or dul.to_provider_queue.queue or dul._kill_thread:
            return False
        queue.Queue.put(dul.to_provider_queue, primitive)  # not rung: nothing to wake for
        dul._process_recv_primitive()  # Evt7 or Evt14 on the event queue
        dul.state_machine.do_action(dul.event_queue.get_nowait())
        return True
    finally:
        dul.step_lock.release()


class EventDrivenDUL(DULServiceProvider):
    """pynetdicom's DICOM Upper Layer provider with a loop that blocks instead of polling."""

    def __init__(self, assoc: Any):
        super().__init__(assoc)
        self.wake_up = WakeUp()
        self.event_queue = WakingQueue(self.wake_up.ring)
        self.to_provider_queue = WakingQueue(self.wake_up.ring)
        self.to_user_queue = WakingQueue(doorbell(assoc).set)
        self.step_lock = threading.Lock()  # held by this thread for each round of its loop

    def run_reactor(self) -> None:
        """Read, send and run the state machine until killed (PS3.8 9.2)."""
        try:
            self._serve()
        finally:
            self.wake_up.close()

    def _serve(self) -> None:
        self._idle_timer.start()
        self.assoc._dul_ready.set()
        readable = False
        while not self._kill_thread:
            with self.step_lock:  # one round; `send_pdu` may take a turn between rounds
                if self.artim_timer.expired:
                    self.event_queue.put("Evt18")
                try:
                    # One outgoing primitive or one incoming PDU per round, like pynetdicom.
                    if self._process_recv_primitive():
                        pass
                    elif readable or self.state_machine.current_state == "Sta13":
                        readable = False
                        if self._is_transport_event():
                            self._idle_timer.restart()
                except Exception as exc:  # noqa: BLE001 - the connection cannot go on
                    self.transport_failed(exc)
                    return
                try:
                    event = self.event_queue.get_nowait()
                except queue.Empty:
                    event = None
                    if self.state_machine.current_state == "Sta13" and self._socket_open():
                        continue  # PS3.8 Sta13: read what is left, close once the peer is quiet
                else:
                    self.state_machine.do_action(event)
            if event is None:
                readable = self._sleep()

    def send_pdu(self, primitive: Any) -> None:
        """Queue a primitive for the peer; an A-ASSOCIATE-AC or A-RELEASE-RP is sent at once
        by the calling thread when this one is between rounds with nothing else to do.

        PS3.8 AE-7 (Sta3) and AR-4 (Sta8) only send a PDU (AR-4 also starts ARTIM); run here,
        under the lock the DUL thread holds for each of its rounds, they take the same state
        machine through the same transition, and the peer has its answer without waiting for
        this thread to wake (~0.1-0.5 ms each on a busy machine). Anything else, or anything
        already queued, goes the DUL thread's way."""
        if threading.current_thread() is self or not _answers_now(self, primitive):
            super().send_pdu(primitive)
            return
        # As pynetdicom's send_pdu: the event first (its handlers may take their time), and
        # outside the lock, so this thread's rounds go on meanwhile.
        evt.trigger(self.assoc, evt.EVT_ACSE_SENT, {"primitive": primitive})
        if not _sent_inline(self, primitive):
            self.to_provider_queue.put(primitive)

    def transport_failed(self, error: Exception) -> None:
        """Reading or sending raised: end the connection (subclasses say why first)."""
        end_broken_connection(self)

    def _has_work(self) -> bool:
        return bool(self._kill_thread or self.event_queue.queue or self.to_provider_queue.queue)

    def _sleep_limit(self) -> float:
        artim = self.artim_timer
        running = artim.timeout is not None and artim._start_time is not None \
            and artim._end_time is None
        return max(0.0, min(artim.remaining, LONGEST_SLEEP)) if running else LONGEST_SLEEP

    def _open_socket(self) -> Any:
        transport = self.socket
        return transport.socket if transport is not None and transport._is_connected else None

    def _socket_open(self) -> bool:
        return self._open_socket() is not None

    def _sleep(self) -> bool:
        """Block until the socket is readable (True), work is queued, or ARTIM expires."""
        sock = self._open_socket()
        if isinstance(sock, ssl.SSLSocket) and sock.pending():
            return True  # decrypted bytes select() cannot see
        watched: list[Any] = [self.wake_up] if sock is None else [self.wake_up, sock]
        self.wake_up.sleeping = True
        try:
            if self._has_work():  # re-checked after announcing the sleep: no lost wake-up
                return False
            ready = select.select(watched, [], [], self._sleep_limit())[0]
        except (OSError, ValueError):
            return sock is not None  # closed under us: the read path says Evt17
        finally:
            self.wake_up.sleeping = False
        if self.wake_up in ready:
            self.wake_up.drain()
        return sock is not None and sock in ready

    def kill_dul(self) -> None:
        """Stop the loop (it may be asleep)."""
        self._kill_thread = True
        self.wake_up.ring()

    def stop_dul(self) -> bool:
        """In Sta1, stop the loop and wait for the thread to end; otherwise False."""
        if self.state_machine.current_state != "Sta1":
            return False
        self.kill_dul()
        if self.is_alive() and threading.current_thread() is not self:
            self.join()
        return True


# --- the association reactor --------------------------------------------------------------------

def _idle_wait(assoc: Any) -> float:
    timer = assoc.dul._idle_timer
    if timer.timeout is None:
        return LONGEST_SLEEP
    return max(0.0, min(timer.remaining + 0.001, LONGEST_SLEEP))


def _react(assoc: Any) -> bool:
    """One round of the reactor's duties; False when there was nothing to do."""
    context_id, message = assoc.dimse.get_msg(block=False)
    if message:
        assoc._serve_request(message, context_id)
        return True
    if assoc.is_established and assoc.acse.is_release_requested():
        assoc.acse.send_release(is_response=True)
        _ASSOCIATION_LOG.info("Association Released")
        assoc.is_released = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_RELEASED, {})
        assoc.kill()
        return True
    if assoc.acse.is_aborted():
        aborted_by_provider = assoc.acse.is_aborted("a-p-abort")
        _ASSOCIATION_LOG.info("Association Aborted%s", " (A-P-ABORT)" * aborted_by_provider)
        assoc.dul.receive_pdu(wait=False)  # so EVT_ACSE_RECV fires, as in pynetdicom
        assoc.is_aborted = True
        assoc.is_established = False
        evt.trigger(assoc, evt.EVT_ABORTED, {})
        assoc.kill()
        return True
    if not assoc.dul.is_alive():
        assoc.kill()
        return True
    if assoc.dul.idle_timer_expired():
        _ASSOCIATION_LOG.error("Network timeout reached")
        if assoc.network_timeout_response == "A-RELEASE":
            assoc._is_paused = True  # release() waits for this thread to be paused
            assoc.release()
        else:
            assoc.abort()
        assoc.kill()
        return True
    return False


def run_association_reactor(assoc: Any) -> None:
    """Association._run_reactor without the 1 ms sleep: the reactor waits on its doorbell.

    The pause handshake is pynetdicom's: `_is_paused` is True whenever this thread touches
    neither queue (at the checkpoint, and asleep on the doorbell), so a `send_c_*` or
    `release` that clears the checkpoint may proceed; a woken reactor then stops at the
    checkpoint before it reads anything.
    """
    bell = doorbell(assoc)
    while not assoc._kill:
        assoc._is_paused = True
        assoc._reactor_checkpoint.wait()
        assoc._is_paused = False
        bell.clear()
        if not _react(assoc):
            assoc._is_paused = True
            bell.wait(_idle_wait(assoc))


_pynetdicom_kill = Association.kill


def _kill_and_ring(self: Association) -> None:
    """Association.kill, waking a reactor asleep on its doorbell first."""
    self._kill = True
    doorbell(self).set()
    _pynetdicom_kill(self)


_pynetdicom_serve_request = Association._serve_request


def _serve_request_then_ring(self: Association, message: Any, context_id: int) -> None:
    """Association._serve_request, or a handler of ours that serves the request without
    pynetdicom's service class (direct.py). Served outside the reactor (pynetdicom serves an
    N-EVENT-REPORT in a thread of its own, which clears `_is_paused` as it ends), it wakes the
    reactor to set `_is_paused` again, or a `release` waiting for it would wait for good."""
    direct = direct_handler(self, message, context_id)
    if direct is not None:
        serve_direct(self, direct[0], message, direct[1])
    else:
        _pynetdicom_serve_request(self, message, context_id)
    if threading.current_thread() is not self:
        doorbell(self).set()


def ring_doorbell(assoc: Any) -> None:
    """Wake the association's reactor (after clearing its checkpoint: it parks there)."""
    doorbell(assoc).set()


# --- association set-up ---------------------------------------------------------------------------

def start_reading_early(assoc: Any) -> None:
    """Start an acceptor's DUL thread now, from the thread that accepted the connection, so it
    reads and decodes the A-ASSOCIATE-RQ while the association's own thread starts. pynetdicom
    starts it from that thread once it runs: two thread starts in a row (~0.3-0.5 ms each on a
    busy machine) before the request is read. Its `run_reactor` then does not start it again."""
    if assoc.is_acceptor and not assoc._started_dul:
        assoc.dul.start()
        assoc._started_dul = True


def install_reactor_hooks() -> tuple[str, ...]:
    """Put the event-driven association reactor in place; what it replaces, for the record.
    (The DUL is replaced through the class HardenedDUL derives from.)"""
    Association._run_reactor = run_association_reactor  # type: ignore[method-assign]
    Association.kill = _kill_and_ring  # type: ignore[method-assign]
    Association._serve_request = _serve_request_then_ring  # type: ignore[method-assign]
    return ("Association._run_reactor", "Association.kill", "Association._serve_request")
