"""C-FIND served without pynetdicom's service class (issue #12): on a plain socket the
association's reactor hands the request straight to our handler, which sends every response
itself; over TLS pynetdicom's Query/Retrieve service class still serves it. What a peer sees is
the same either way (PS3.4 C.4.1): Pending responses with identifiers, the final status,
C-CANCEL honoured between responses.

Real clients over loopback: pynetdicom's SCU, on a plain socket and over TLS (C-CANCEL on the
direct path: test_find_streaming.py and test_send_fast_path.py). The service classes are
observed, not replaced.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.service_class import (
    BasicWorklistManagementServiceClass,
    QueryRetrieveServiceClass,
)

from pacs.dimse.server import RunningServer
from pacs.model.levels import STUDY_ROOT_FIND
from tests.integration.find_support import find, query
from tests.integration.move_support import LAYOUT, populate
from tests.integration.test_security import _tls_server, certificates

__all__ = ["certificates"]  # a fixture, imported for the TLS test


@pytest.fixture
def service_classes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the pynetdicom service classes that served a request (observed)."""
    served: list[str] = []
    for service_class in (QueryRetrieveServiceClass, BasicWorklistManagementServiceClass):
        original = service_class.SCP

        def observed(self: Any, request: Any, context: Any, original: Any = original) -> None:
            served.append(type(self).__name__)
            original(self, request, context)

        monkeypatch.setattr(service_class, "SCP", observed)
    return served


def _series_query() -> Any:
    return query(QueryRetrieveLevel="IMAGE", StudyInstanceUID=LAYOUT.study_s1,
                 SeriesInstanceUID="", SOPInstanceUID="")


# PS3.4 C.4.1.2: a C-FIND on a plain socket gets one Pending response per match and a final
# Success, sent by our handler without pynetdicom's Query/Retrieve service class.
def test_find_on_a_plain_socket_is_served_without_the_service_class(
    server_factory: Callable[..., RunningServer], tmp_path: Path,
    service_classes: list[str],
) -> None:
    server = server_factory()
    populate(server.services, tmp_path / "in")
    result = find(server, _series_query())
    assert result.status == 0x0000
    assert len(result.identifiers) == 5
    assert {str(found.StudyInstanceUID) for found in result.identifiers} == {LAYOUT.study_s1}
    assert service_classes == []


# PS3.15 B.9: over TLS the same C-FIND goes through pynetdicom's service class (the send fast
# path declines there) and its answer is the same.
def test_find_over_tls_keeps_pynetdicom_s_service_class(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path],
    tmp_path: Path, service_classes: list[str],
) -> None:
    server = _tls_server(server_factory, certificates)
    populate(server.services, tmp_path / "in")
    tls = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(certificates["ca.pem"]))
    tls.check_hostname = False
    tls.load_cert_chain(str(certificates["client.pem"]), str(certificates["client.key"]))
    ae = AE(ae_title="TLSFINDSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(STUDY_ROOT_FIND)
    host, port = server.tls_address or ("", 0)
    association = ae.associate(host, port, ae_title="MINIPACS", tls_args=(tls, None))
    assert association.is_established
    try:
        answers = list(association.send_c_find(_series_query(), STUDY_ROOT_FIND))
    finally:
        association.release()
    statuses = [int(status.Status) for status, _ in answers]
    assert statuses == [0xFF00] * 5 + [0x0000]
    assert service_classes == ["QueryRetrieveServiceClass"]
