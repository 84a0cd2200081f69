"""One structured log line per DIMSE operation, and Prometheus metrics when enabled."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

from pacs.dimse.server import RunningServer
from tests.conftest import REPO, ServerProcess
from tests.dcmtk import run_tool
from tests.factory import make_file
from tests.postgres import free_port


def _fields(caplog: pytest.LogCaptureFixture, operation: str) -> list[dict[str, object]]:
    return [getattr(r, "fields", {}) for r in caplog.records
            if r.name == "pacs.operations" and getattr(r, "fields", {}).get("operation")
            == operation]


def test_each_store_is_one_operation_record_with_peer_uids_status_duration(
    server: RunningServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pacs.operations")
    host, port = server.address
    files = [make_file(tmp_path, instance=n) for n in range(3)]
    assert run_tool("storescu", ["-aet", "MODALITY1", "-aec", "MINIPACS", host, str(port),
                                 *map(str, files)]).returncode == 0
    records = _fields(caplog, "C-STORE")
    assert len(records) == 3
    assert {r["peer_ae"] for r in records} == {"MODALITY1"}
    assert all(r["status"] == "0x0000" and r["sop_instance_uid"] and "duration_ms" in r
               for r in records)


def test_log_format_json_prints_one_json_object_per_operation(
    server_process: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = server_process("--log-format", "json")
    run_tool("echoscu", ["-aec", "MINIPACS", "127.0.0.1", str(server.port)])
    server.terminate()
    lines = [json.loads(line) for line in server.log.read_text().splitlines()
             if line.startswith("{")]
    echoes = [line for line in lines if line.get("operation") == "C-ECHO"]
    assert len(echoes) == 1
    assert echoes[0]["peer_ae"] == "ECHOSCU" and echoes[0]["status"] == "0x0000"


def test_metrics_endpoint_counts_operations_and_bytes(
    server_factory: Callable[..., RunningServer], tmp_path: Path
) -> None:
    pytest.importorskip("prometheus_client")
    server = server_factory(metrics_port=free_port())
    host, port = server.address
    run_tool("storescu", ["-aec", "MINIPACS", host, str(port), str(make_file(tmp_path))])
    with urllib.request.urlopen(
        f"http://127.0.0.1:{server.services.metrics.port}/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    assert 'minipacs_operations_total{operation="C-STORE",status="0x0000"} 1.0' in text
    assert "minipacs_operation_seconds_bucket" in text
    assert 'minipacs_bytes_total{direction="received"}' in text


def test_metrics_are_off_by_default(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", "import pacs.dimse.server, sys; "
                             "print('prometheus_client' in sys.modules)"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.stdout.strip() == "False"


# Log lines go to standard error as it is when they are written: a process (a test runner, an
# embedding application) that swaps sys.stderr after start-up still gets every line, and no
# "Logging error ... I/O operation on closed file" for the one it closed.
def test_log_lines_follow_standard_error_when_it_is_swapped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from pacs.cli.main import configure_logging

    root, pynetdicom_log = logging.getLogger(), logging.getLogger("pynetdicom")
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # put back afterwards
    monkeypatch.setattr(root, "level", root.level)
    monkeypatch.setattr(pynetdicom_log, "level", pynetdicom_log.level)
    configure_logging("INFO")
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    logging.getLogger("pacs.test").info("to the first")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    logging.getLogger("pacs.test").info("to the second")
    assert second.getvalue().endswith("pacs.test: to the second\n")
