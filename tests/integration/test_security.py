"""Who may do what: allow-list, reject reasons, TLS, and the data set size limit."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from pydicom.uid import ExplicitVRLittleEndian

from pacs.config import Peer
from pacs.dimse.server import RunningServer
from pacs.model.status import StoreStatus
from tests.conftest import scu
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE, make_file


def _echo(server: RunningServer, *extra: str, calling: str = "ECHOSCU",
          called: str = "MINIPACS") -> subprocess.CompletedProcess[str]:
    host, port = server.address
    return run_tool("echoscu", [*extra, "-aet", calling, "-aec", called, host, str(port)])


def _store(server: RunningServer, path: Path, calling: str) -> int:
    ae = scu(CT_IMAGE_STORAGE, ae_title=calling, transfer_syntaxes=[ExplicitVRLittleEndian])
    host, port = server.address
    association = ae.associate(host, port, ae_title="MINIPACS")
    assert association.is_established
    try:
        return int(association.send_c_store(path).Status)
    finally:
        association.release()


def test_open_default_logs_a_warning_at_start(
    server_factory: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture
) -> None:
    server_factory()
    assert "no allow-list configured" in caplog.text


def test_allow_list_lets_unknown_callers_echo_and_store_only(
    server_factory: Callable[..., RunningServer], tmp_path: Path, chunked_send: None
) -> None:
    server = server_factory(peers=(Peer("VIEWER", services=frozenset({"echo", "find"})),))
    assert _echo(server, calling="STRANGER").returncode == 0
    assert _store(server, make_file(tmp_path, instance=1), "STRANGER") == 0x0000


def test_known_peer_without_store_permission_gets_0124(
    server_factory: Callable[..., RunningServer], tmp_path: Path, chunked_send: None
) -> None:
    # PS3.7 C.5.4: Refused: Not Authorized, with an Error Comment.
    server = server_factory(peers=(Peer("VIEWER", services=frozenset({"echo", "find"})),))
    assert _store(server, make_file(tmp_path, instance=2), "VIEWER") == \
        StoreStatus.NOT_AUTHORIZED
    assert server.services.index.stats().instances == 0


def test_peer_bound_to_another_host_counts_as_unknown(
    server_factory: Callable[..., RunningServer], tmp_path: Path, chunked_send: None
) -> None:
    # The title alone is not enough when the entry names a host: 127.0.0.1 is not it.
    server = server_factory(peers=(Peer("VIEWER", host="192.0.2.99"),), unknown_callers="echo")
    assert _store(server, make_file(tmp_path, instance=4), "VIEWER") == \
        StoreStatus.NOT_AUTHORIZED


def test_unknown_caller_rejected_with_calling_ae_not_recognized(
    server_factory: Callable[..., RunningServer],
) -> None:
    # PS3.8 9.3.4: A-ASSOCIATE-RJ reason 3, calling AE title not recognized.
    server = server_factory(peers=(Peer("VIEWER"),), unknown_callers="reject")
    result = _echo(server, calling="STRANGER")
    assert "Calling AE Title Not Recognized" in result.stdout + result.stderr
    assert _echo(server, calling="VIEWER").returncode == 0


def test_wrong_called_ae_rejected_with_called_ae_not_recognized(server: RunningServer) -> None:
    # PS3.8 9.3.4: A-ASSOCIATE-RJ reason 7, called AE title not recognized.
    result = _echo(server, called="SOMEONEELSE")
    assert "Called AE Title Not Recognized" in result.stdout + result.stderr


def test_data_set_over_the_size_limit_is_a700_and_not_kept(
    server_factory: Callable[..., RunningServer], tmp_path: Path, chunked_send: None
) -> None:
    server = server_factory(max_dataset_size=1000)
    big = make_file(tmp_path, instance=3, rows=64, columns=64)  # 8 KiB of pixels
    assert _store(server, big, "MODALITY") == StoreStatus.OUT_OF_RESOURCES
    assert server.services.index.stats().instances == 0
    assert list(server.services.archive.iter_files()) == []


# --- TLS (PS3.15 B.9 / BCP 195) -----------------------------------------------------------------

def _openssl(*arguments: str) -> None:
    subprocess.run(["openssl", *arguments], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate and a client certificate, made for the test."""
    folder = tmp_path_factory.mktemp("tls")
    paths = {name: folder / name for name in
             ("ca.key", "ca.pem", "server.key", "server.pem", "client.key", "client.pem")}
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=minipacs test CA", "-keyout", str(paths["ca.key"]),
             "-out", str(paths["ca.pem"]))
    for who in ("server", "client"):
        request = folder / f"{who}.csr"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN=minipacs {who}",
                 "-keyout", str(paths[f"{who}.key"]), "-out", str(request))
        _openssl("x509", "-req", "-in", str(request), "-CA", str(paths["ca.pem"]),
                 "-CAkey", str(paths["ca.key"]), "-CAcreateserial", "-days", "2",
                 "-out", str(paths[f"{who}.pem"]))
    return paths


def _tls_server(server_factory: Callable[..., RunningServer], certificates: dict[str, Path],
                **overrides: object) -> RunningServer:
    return server_factory(tls_port=0, tls_certificate=certificates["server.pem"],
                          tls_key=certificates["server.key"], tls_ca=certificates["ca.pem"],
                          **overrides)


def _tls_client(certificates: dict[str, Path], anonymous: bool = False) -> list[str]:
    identity = ["+tla"] if anonymous else [
        "+tls", str(certificates["client.key"]), str(certificates["client.pem"])]
    return [*identity, "+cf", str(certificates["ca.pem"])]


def test_echoscu_over_tls(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path]
) -> None:
    server = _tls_server(server_factory, certificates)
    assert server.tls_address is not None
    host, port = server.tls_address
    result = run_tool("echoscu", [*_tls_client(certificates), "-aec", "MINIPACS", host,
                                  str(port)])
    assert result.returncode == 0, result.stdout + result.stderr


def test_storescu_over_tls(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path], tmp_path: Path
) -> None:
    server = _tls_server(server_factory, certificates)
    host, port = server.tls_address or ("", 0)
    result = run_tool("storescu", [*_tls_client(certificates), "-aec", "MINIPACS", host,
                                   str(port), str(make_file(tmp_path))])
    assert result.returncode == 0, result.stdout + result.stderr
    assert server.services.index.stats().instances == 1


def test_findscu_over_tls_reaches_the_find_service(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path]
) -> None:
    server = _tls_server(server_factory, certificates)
    host, port = server.tls_address or ("", 0)
    result = run_tool("findscu", [*_tls_client(certificates), "-S", "-k",
                                  "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID",
                                  "-aec", "MINIPACS", host, str(port)])
    assert "Association Rejected" not in result.stdout + result.stderr
    assert "Association Request Failed" not in result.stdout + result.stderr


def test_client_certificate_required_refuses_anonymous_tls(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path]
) -> None:
    server = _tls_server(server_factory, certificates, tls_require_client_certificate=True)
    host, port = server.tls_address or ("", 0)
    anonymous = run_tool("echoscu", [*_tls_client(certificates, anonymous=True), "-aec",
                                     "MINIPACS", host, str(port)])
    assert anonymous.returncode != 0
    with_certificate = run_tool("echoscu", [*_tls_client(certificates), "-aec", "MINIPACS",
                                            host, str(port)])
    assert with_certificate.returncode == 0


def test_plain_connection_to_the_tls_port_fails(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path]
) -> None:
    server = _tls_server(server_factory, certificates)
    host, port = server.tls_address or ("", 0)
    assert run_tool("echoscu", ["-aec", "MINIPACS", host, str(port)], timeout=60).returncode != 0
    assert _echo(server).returncode == 0  # and the plain port still works beside it


def test_tls_only_listens_on_no_plain_port(
    server_factory: Callable[..., RunningServer], certificates: dict[str, Path]
) -> None:
    server = _tls_server(server_factory, certificates, tls_only=True)
    host, port = server.tls_address or ("", 0)
    assert server.address == (host, port)  # the one listener is the TLS one
    assert run_tool("echoscu", [*_tls_client(certificates), "-aec", "MINIPACS", host,
                                str(port)]).returncode == 0
    assert run_tool("echoscu", ["-aec", "MINIPACS", host, str(port)],
                    timeout=60).returncode != 0
