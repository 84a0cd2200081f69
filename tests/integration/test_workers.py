"""`pacs serve --workers N`: the supervisor hands each connection to the least busy worker."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from pynetdicom.sop_class import Verification

from tests.conftest import ServerProcess, scu
from tests.dcmtk import run_tool
from tests.integration.test_security import certificates  # noqa: F401 - a fixture

_ECHO_LINE = re.compile(r"\[(\d+)\] pacs\.operations: .*peer_address=127\.0\.0\.1:(\d+) "
                        r"operation=C-ECHO status=0x0000")


def _worker_of_each_echo(log: str) -> dict[int, int]:
    """Client port -> pid of the worker that answered its C-ECHO, from the workers' logs."""
    return {int(port): int(pid) for pid, port in _ECHO_LINE.findall(log)}


def _local_port(association: object) -> int:
    return int(association.dul.socket.socket.getsockname()[1])  # type: ignore[attr-defined]


# Issue #12: four long associations at once over two workers land two on each, whatever the
# ports (SO_REUSEPORT's hash split them 4/0 or 3/1 more often than not).
def test_four_held_associations_over_two_workers_land_two_on_each(
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process("--workers", "2")
    ae = scu(Verification)
    held = [ae.associate("127.0.0.1", server.port, ae_title="MINIPACS") for _ in range(4)]
    try:
        assert all(association.is_established for association in held)
        for association in held:
            assert association.send_c_echo().Status == 0x0000
        ports = [_local_port(association) for association in held]
    finally:
        for association in held:
            association.release()
    workers = _worker_of_each_echo(server.log.read_text())
    assert sorted(Counter(workers[port] for port in ports).values()) == [2, 2]


# Issue #12: a connection is never handed to a dead worker; the others take it meanwhile.
def test_connections_go_to_the_living_worker_when_one_dies(
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process("--workers", "2")
    started = [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)",
                                              server.log.read_text())]
    assert len(started) == 2
    victim = started[0]
    watcher = os.pidfd_open(victim)
    try:
        os.kill(victim, 9)
        select.select([watcher], [], [], 30)  # readable once the worker has exited
    finally:
        os.close(watcher)
    ae = scu(Verification)
    ports = []
    for _ in range(3):
        association = ae.associate("127.0.0.1", server.port, ae_title="MINIPACS")
        assert association.is_established
        assert association.send_c_echo().Status == 0x0000
        ports.append(_local_port(association))
        association.release()
    workers = _worker_of_each_echo(server.log.read_text())
    assert victim not in {workers[port] for port in ports}  # the survivor, or its restart


# PS3.15 B.9 with workers: the supervisor accepts on the TLS port too and the worker that
# takes the connection does the handshake.
def test_tls_connections_are_handed_to_workers(
    server_process: Callable[..., ServerProcess],
    certificates: dict[str, Path],  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    config = tmp_path / "tls.toml"
    config.write_text(f'[tls]\nport = 0\ncertificate = "{certificates["server.pem"]}"\n'
                      f'key = "{certificates["server.key"]}"\nca = "{certificates["ca.pem"]}"\n')
    server = server_process("--workers", "2", "--config", str(config))
    tls_port = (server.folder / "ready").read_text().split()[2]
    client = ["+tls", str(certificates["client.key"]), str(certificates["client.pem"]),
              "+cf", str(certificates["ca.pem"])]
    for _ in range(2):
        result = run_tool("echoscu", [*client, "-aec", "MINIPACS", "127.0.0.1", tls_port])
        assert result.returncode == 0, result.stdout + result.stderr
    assert run_tool("echoscu", ["-aec", "MINIPACS", "127.0.0.1",
                                str(server.port)]).returncode == 0


# Issue #12: a worker serves only what its supervisor hands over; when the supervisor is
# killed, its workers stop too instead of lingering without connections.
def test_workers_stop_when_the_supervisor_is_killed(
    server_process: Callable[..., ServerProcess],
) -> None:
    server = server_process("--workers", "2")
    workers = [int(pid) for pid in re.findall(r"worker \d started \(pid (\d+)\)",
                                              server.log.read_text())]
    watchers = [os.pidfd_open(pid) for pid in workers]
    try:
        server.kill()
        for watcher in watchers:
            readable, _, _ = select.select([watcher], [], [], 30)
            assert readable, "a worker outlived its supervisor by 30 s"
    finally:
        for watcher in watchers:
            os.close(watcher)


_SUPERVISOR_IMPORTS = """
import sys
import pacs.cli.workers as workers
def report(settings, arguments, argv):
    heavy = {"pydicom", "pynetdicom", "peewee", "psycopg2", "numpy", "PIL", "starlette"}
    print(sorted(heavy & {name.split(".")[0] for name in sys.modules}))
    return 0
workers.run_workers = report
from pacs.cli.main import main
raise SystemExit(main(["serve", "--workers", "2", "--port", "0", "--http-port", "0",
                       "--storage", sys.argv[1], "--database", "sqlite:///" + sys.argv[1] + "/i"]))
"""


# cli/workers.py: the supervisor only accepts and hands connections over, so it loads none of
# the libraries the workers serve with (a worker's RSS, not a third server's).
def test_supervisor_loads_none_of_the_serving_libraries(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", _SUPERVISOR_IMPORTS, str(tmp_path)],
                            capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"
