"""C-STORE served without pynetdicom's Storage service class (issue #12): on a plain socket the
DUL thread (or the association's reactor) hands the request straight to our handler and sends
the response itself; over TLS pynetdicom's service class still serves it. What a peer sees is
the same either way (PS3.4 B.2.3, PS3.7 9.3.1.2): the status, with Error Comment on a failure,
and the received file is never left in the temp folder.

Real clients over loopback: DCMTK's storescu, pynetdicom's SCU, on a plain socket and over
TLS. The service class is observed, not replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pynetdicom.service_class import StorageServiceClass

from pacs.config import Peer
from pacs.dimse.server import RunningServer
from pacs.services.access import AccessPolicy
from tests.conftest import scu
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE, make_dataset, make_file
from tests.integration.test_security import _tls_client, _tls_server, certificates

__all__ = ["certificates"]  # a fixture, imported for the TLS test


@pytest.fixture
def storage_service_class(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SOP Instance UIDs pynetdicom's Storage service class served (observed)."""
    served: list[str] = []
    original = StorageServiceClass.SCP

    def observed(self: Any, request: Any, context: Any) -> None:
        served.append(str(request.AffectedSOPInstanceUID))
        original(self, request, context)

    monkeypatch.setattr(StorageServiceClass, "SCP", observed)
    return served


# PS3.4 B.2.3: storescu's instances on a plain socket are stored and answered with Success by
# our handler, without pynetdicom's Storage service class.
def test_store_on_a_plain_socket_is_served_without_the_service_class(
    server: RunningServer, tmp_path: Path, incoming: Path, storage_service_class: list[str],
) -> None:
    files = [make_file(tmp_path / str(n), instance=n) for n in range(3)]
    host, port = server.address
    result = run_tool("storescu", ["-aec", "MINIPACS", host, str(port), *map(str, files)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.services.index.stats().instances == 3
    assert storage_service_class == []
    assert list(incoming.iterdir()) == []


# PS3.7 9.3.1.2 and C.5.4: a refused store answered directly carries its status and Error
# Comment, and its received file is removed.
def test_refused_store_answered_directly_carries_status_and_error_comment(
    server: RunningServer, incoming: Path, storage_service_class: list[str],
) -> None:
    services = server.services
    before = services.access
    services.access = AccessPolicy((Peer("OTHER", None, frozenset({"store"})),), "reject")
    try:
        association = scu(CT_IMAGE_STORAGE).associate(*server.address, ae_title="MINIPACS")
        assert association.is_established
        try:
            status = association.send_c_store(make_dataset(patient_id="REFUSED"))
        finally:
            association.release()
    finally:
        services.access = before
    assert status.Status == 0x0124
    assert "may not use store" in status.ErrorComment
    assert storage_service_class == []
    assert services.index.stats().instances == 0
    assert list(incoming.iterdir()) == []


# PS3.15 B.9: over TLS the same store goes through pynetdicom's service class (the send fast
# path declines there) and is stored all the same.
def test_store_over_tls_keeps_pynetdicom_s_service_class(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path],
    tmp_path: Path, storage_service_class: list[str],
) -> None:
    server = _tls_server(server_factory, certificates)
    host, port = server.tls_address or ("", 0)
    dataset = make_dataset(patient_id="TLS")
    result = run_tool("storescu", [*_tls_client(certificates), "-aec", "MINIPACS", host,
                                   str(port), str(make_file(tmp_path, patient_id="TLS"))])
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.services.index.stats().instances == 1
    assert storage_service_class == [str(dataset.SOPInstanceUID)]

