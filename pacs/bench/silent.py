"""Associations held open and silent for `scripts/bench idle`: N pynetdicom SCUs with the
Verification context, one C-ECHO each to prove the server serves them, then nothing.

Layer: tool (pacs.bench); pynetdicom as an SCU, standard library. While held, every SCU is
quietened so that the clients, on the same cores, do not compete with the server whose idle
CPU is being measured: pynetdicom 3.0.4 polls in two threads per association (the association
reactor sleeps 1 ms per loop, the DUL thread 1 ms whenever it finds nothing). The reactor is
parked on its own checkpoint event (the hand-shake `Association.release` itself uses) and the
DUL polls every `QUIET_POLL` seconds; both are restored before the release.

`park_reactor` is also the bench's guard for its own SCU requests (pacs/bench/clients.py):
pynetdicom 3.0.4's `send_c_*` pause only waits for the reactor's `_is_paused` flag, which is
still True for a moment after the reactor has been woken; in that window the reactor takes one
more message off the DIMSE queue, and a response it takes is lost (DESIGN.md, "Measured
pitfalls"). Parked here, the reactor is proven blocked in `Event.wait()`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]

CALLING_AE = "BENCHIDLE"
QUIET_POLL = 0.05  # seconds between the DUL's socket checks while held: ~20 wake-ups/s
PYNETDICOM_POLL = 0.001  # pynetdicom 3.0.4's own DUL delay, restored before release
ESTABLISHED = "Sta6"  # PS3.8 9.2: association established, ready for data transfer

T = TypeVar("T")


def park_reactor(association: Association, timeout: float = 10.0) -> bool:
    """Keep the association's reactor thread off the DIMSE queue until its checkpoint is set
    again: clear the checkpoint and return True once the thread is blocked waiting on it
    (among the event's waiters, not merely flagged `_is_paused`) or has ended; False after
    `timeout` seconds."""
    checkpoint = association._reactor_checkpoint
    checkpoint.clear()
    waiters = checkpoint._cond._waiters  # type: ignore[attr-defined]  # CPython's Event
    deadline = time.monotonic() + timeout
    while not waiters and association.is_alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0001)
    return True


class SilentAssociations:
    """`count` associations to 127.0.0.1:`port`, opened one after the other, echoed and
    released in parallel (a server with a few worker threads, like Orthanc, serves them in
    turn), and held silent in between."""

    def __init__(self, port: int, called_ae: str, count: int, timeout: float) -> None:
        self.port = port
        self.called_ae = called_ae
        self.count = count
        self.ae = AE(ae_title=CALLING_AE)
        self.ae.add_requested_context(Verification)
        self.ae.acse_timeout = self.ae.dimse_timeout = timeout
        self.ae.network_timeout = None  # the client never gives up on a silent association
        self.associations: list[Association] = []

    def _parallel(self, work: Callable[[Association], T]) -> list[T]:
        if not self.associations:
            return []
        with ThreadPoolExecutor(max_workers=min(len(self.associations), 64),
                                thread_name_prefix="silent") as pool:
            return list(pool.map(work, self.associations))

    def open(self) -> None:
        """Open every association; RuntimeError naming the first that was not accepted."""
        for number in range(1, self.count + 1):
            association = self.ae.associate("127.0.0.1", self.port, ae_title=self.called_ae)
            if not association.is_established:
                raise RuntimeError(f"association {number} of {self.count} was not accepted "
                                   f"(rejected: {association.is_rejected}, aborted: "
                                   f"{association.is_aborted})")
            self.associations.append(association)

    def echo(self) -> None:
        """One C-ECHO on each association, at once; RuntimeError unless all answer Success."""
        def one(association: Association) -> int | None:
            status = association.send_c_echo()
            return int(status.Status) if status and "Status" in status else None

        statuses = self._parallel(one)
        failed = [status for status in statuses if status != 0x0000]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(statuses)} C-ECHOs did not answer "
                               f"Success (statuses {sorted(set(map(str, failed)))})")

    def quieten(self) -> None:
        """Park every reactor and slow every DUL poll (see the module docstring)."""
        for association in self.associations:
            park_reactor(association)
            association.dul._run_loop_delay = QUIET_POLL

    def _wake(self, association: Association) -> None:
        association.dul._run_loop_delay = PYNETDICOM_POLL
        association._reactor_checkpoint.set()

    def still_open(self) -> int:
        """Associations whose DUL is still running in the established state."""
        return sum(1 for association in self.associations if self._established(association))

    @staticmethod
    def _established(association: Association) -> bool:
        # A parked reactor does not see a peer's abort; the DUL's state machine does.
        return bool(association.dul.is_alive()
                    and association.dul.state_machine.current_state == ESTABLISHED)

    def release(self) -> int:
        """Release every association (A-RELEASE), at once; those that fail are aborted.
        Returns how many released cleanly."""
        def one(association: Association) -> bool:
            alive = self._established(association)
            self._wake(association)
            if alive and association.is_established:
                association.release()
            if not association.is_released and association.is_established:
                association.abort()
            return bool(association.is_released)

        released = sum(self._parallel(one))
        self.associations.clear()
        return released
