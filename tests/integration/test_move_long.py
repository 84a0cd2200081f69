"""A long C-MOVE against a fast destination (DCMTK storescp): no stalled sub-operation.

pynetdicom 3.0.4 can lose a C-STORE response to its own reactor thread (~1 in 3,000
back-to-back stores on loopback, see pacs/handlers/move_destination.py); a lost response
would stall one sub-operation for the DIMSE timeout and then fail it. One backend is enough:
the index is read once, before the first sub-operation.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pacs.config import RemoteAE
from pacs.dimse.server import start_server
from pacs.services.context import Services
from tests.factory import make_dataset
from tests.integration.move_support import (
    StoreSCP,
    identifier,
    ingest,
    move,
)

INSTANCES = 600
DIMSE_TIMEOUT = 30


# PS3.4 C.4.2.3.1: every one of 600 sub-operations completes, each Pending response counts
# down by one, and the whole move takes far less than one DIMSE timeout.
def test_long_move_to_storescp_completes_without_a_stall(
    services_factory: Callable[..., Services], sqlite_url: str,
    storescp: Callable[..., StoreSCP], tmp_path: Path,
) -> None:
    destination = storescp("--ignore")
    services = services_factory(sqlite_url, dimse_timeout=DIMSE_TIMEOUT,
                                remotes=(RemoteAE("DEST", "127.0.0.1", destination.port),))
    datasets = [make_dataset(patient_id="PL", study="SL", series=f"SE{n // 100}", instance=n,
                             rows=4, columns=4) for n in range(INSTANCES)]
    ingest(services, datasets, tmp_path / "in")
    server = start_server(services)
    try:
        started = time.monotonic()
        responses = move(server, identifier("STUDY",
                                            StudyInstanceUID=datasets[0].StudyInstanceUID))
        elapsed = time.monotonic() - started
    finally:
        server.stop(grace=2)
    pending = [(r.remaining, r.completed, r.failed, r.warning) for r in responses[:-1]]
    assert pending == [(INSTANCES - n, n, 0, 0) for n in range(1, INSTANCES)]
    final = responses[-1]
    assert (final.status, final.completed, final.failed, final.warning) == (0, INSTANCES, 0, 0)
    # A lost response would stall one sub-operation for the DIMSE timeout, then fail it.
    assert elapsed < DIMSE_TIMEOUT, f"{INSTANCES} instances took {elapsed:.1f} s"
