#!/usr/bin/env python3
"""Measure association set-up: TCP connect to A-ASSOCIATE-AC, and the server's CPU per
association, for the A-ASSOCIATE-RQ that DCMTK's getscu and findscu send.

    .venv/bin/python scripts/measure_setup.py [--associations 1000] [--from DIR ...]
                                              [--study DIR --gets 40]

Records each tool's A-ASSOCIATE-RQ (the tool connects to a listener here that keeps the
first PDU and closes), starts `pacs serve` from this checkout and from each `--from` checkout
(e.g. a `git archive` of an earlier commit) as processes of their own, then replays each
recorded request over raw sockets (connect, A-ASSOCIATE-RQ, wait for the answer, A-RELEASE-RQ,
A-RELEASE-RP, close), the servers taking turns in ten blocks. Reported per server and tool:
the median, 10th and 90th percentile from connect to the whole A-ASSOCIATE-AC, the median of
the whole association, and the server's user+system CPU per association (/proc/PID/stat).
getscu proposes some 120 storage SOP classes with SCP/SCU role selection (~17 KB); findscu
one Q/R class. With `--study`, the files of one study in DIR are stored into each server
(storescu) and fetched back with getscu `--gets` times per server, in turns: the median
getscu wall time and the server's CPU per C-GET.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TCP_NODELAY": "1"}
RELEASE_RQ = bytes([5, 0, 0, 0, 0, 4, 0, 0, 0, 0])
TOOLS = {
    "getscu": ["getscu", "-aet", "GETSCU", "-aec", "MINIPACS", "-S",
               "-k", "QueryRetrieveLevel=STUDY", "-k", "StudyInstanceUID=1.2.3"],
    "findscu": ["findscu", "-aet", "FINDSCU", "-aec", "MINIPACS", "-S",
                "-k", "QueryRetrieveLevel=STUDY", "-k", "PatientID=X"],
}


def read_exactly(connection: socket.socket, count: int) -> bytes:
    """`count` bytes from `connection` (EOFError if it closes first)."""
    data = bytearray()
    while len(data) < count:
        chunk = connection.recv(count - len(data))
        if not chunk:
            raise EOFError(f"closed after {len(data)} of {count} bytes")
        data += chunk
    return bytes(data)


def read_pdu(connection: socket.socket) -> bytes:
    """One whole PDU."""
    header = read_exactly(connection, 6)
    return header + read_exactly(connection, struct.unpack(">L", header[2:6])[0])


def record(tool: str) -> bytes:
    """The A-ASSOCIATE-RQ `tool` sends (it fails once the listener closes: expected)."""
    listener = socket.create_server(("127.0.0.1", 0))
    kept: list[bytes] = []

    def keep_first_pdu() -> None:
        connection, _ = listener.accept()
        with connection:
            kept.append(read_pdu(connection))

    thread = threading.Thread(target=keep_first_pdu)
    thread.start()
    port = listener.getsockname()[1]
    subprocess.run([*TOOLS[tool], "127.0.0.1", str(port)], env=ENV, capture_output=True,
                   timeout=30, check=False)
    thread.join(30)
    listener.close()
    return kept[0]


def start_server(source: Path, folder: Path) -> tuple[subprocess.Popen[bytes], int]:
    """`pacs serve` with `source`'s code on a free port, SQLite, no HTTP; (process, port)."""
    folder.mkdir(parents=True)
    (folder / "empty.toml").write_text("")
    ready = folder / "ready"
    command = [sys.executable, "-m", "pacs", "serve", "--config", str(folder / "empty.toml"),
               "--host", "127.0.0.1", "--port", "0", "--storage", str(folder / "archive"),
               "--database", f"sqlite:///{folder}/index.sqlite", "--ready-file", str(ready),
               "--http-port", "0"]
    with open(folder / "server.log", "ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=folder,
                                   env={**ENV, "PYTHONPATH": str(source)})
    deadline = time.monotonic() + 60
    while not ready.exists() or not ready.read_text().strip():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((folder / "server.log").read_text())
        time.sleep(0.05)
    return process, int(ready.read_text().split()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def associate_once(port: int, request: bytes) -> tuple[float, float]:
    """(seconds to the A-ASSOCIATE-AC, seconds for the whole association)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port)) as connection:
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.sendall(request)
        answer = read_pdu(connection)
        accepted = time.perf_counter()
        if answer[0] != 0x02:
            raise RuntimeError(f"not accepted: PDU type {answer[0]:#x}")
        connection.sendall(RELEASE_RQ)
        read_pdu(connection)
    return accepted - started, time.perf_counter() - started


def study_uid(folder: Path) -> str:
    """The Study Instance UID of the first file in `folder` (dcmdump)."""
    first = sorted(folder.iterdir())[0]
    output = subprocess.run(["dcmdump", "+P", "StudyInstanceUID", str(first)],
                            capture_output=True, text=True, check=True).stdout
    return output.split("[", 1)[1].split("]", 1)[0]


def measure_gets(servers: list[tuple[subprocess.Popen[bytes], int]], sources: list[Path],
                 study: Path, gets: int, work: Path) -> None:
    """Store `study` into each server, then getscu it back `gets` times each, in turns."""
    files = sorted(str(path) for path in study.iterdir())
    uid = study_uid(study)
    for _, port in servers:
        subprocess.run(["storescu", "-aec", "MINIPACS", "127.0.0.1", str(port), *files],
                       env=ENV, check=True, capture_output=True)
    walls: list[list[float]] = [[] for _ in servers]
    cpu = [0.0 for _ in servers]
    for turn in range(gets + 1):  # the first turn warms up (and is not counted)
        for index, (process, port) in enumerate(servers):
            output = work / f"get{index}-{turn}"
            output.mkdir()
            before, started = cpu_seconds(process.pid), time.perf_counter()
            subprocess.run(["getscu", "-aet", "GETSCU", "-aec", "MINIPACS", "-S",
                            "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={uid}",
                            "-od", str(output), "127.0.0.1", str(port)],
                           env=ENV, check=True, capture_output=True)
            if turn:
                walls[index].append(time.perf_counter() - started)
                cpu[index] += cpu_seconds(process.pid) - before
            if len(list(output.iterdir())) != len(files):
                raise RuntimeError(f"getscu received {len(list(output.iterdir()))} files")
    for index, source in enumerate(sources):
        times = sorted(walls[index])
        print(f"getscu C-GET of {len(files)} instances, {source}: median "
              f"{1000 * statistics.median(times):.1f} ms (p10 {1000 * times[gets // 10]:.1f}, "
              f"p90 {1000 * times[9 * gets // 10]:.1f}); server CPU "
              f"{1000 * cpu[index] / gets:.1f} ms per C-GET")


def main() -> None:
    """Record, start, replay, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--associations", type=int, default=1000, help="per server and tool")
    parser.add_argument("--from", dest="sources", action="append", default=[], metavar="DIR",
                        help="another checkout to measure too (repeatable)")
    parser.add_argument("--study", type=Path, help="a folder holding one study's files")
    parser.add_argument("--gets", type=int, default=40, help="getscu runs per server")
    args = parser.parse_args()
    requests = {tool: record(tool) for tool in TOOLS}
    sources = [REPO, *(Path(source).resolve() for source in args.sources)]
    with tempfile.TemporaryDirectory(prefix="measure-setup-") as work:
        servers = [start_server(source, Path(work) / f"server{number}")
                   for number, source in enumerate(sources)]
        try:
            for tool, request in requests.items():
                for _, port in servers:  # warm-up: the first association pays for imports
                    for _ in range(20):
                        associate_once(port, request)
                to_ac: list[list[float]] = [[] for _ in servers]
                whole: list[list[float]] = [[] for _ in servers]
                cpu = [0.0 for _ in servers]
                for _ in range(10):
                    for index, (process, port) in enumerate(servers):
                        before = cpu_seconds(process.pid)
                        for _ in range(args.associations // 10):
                            first, total = associate_once(port, request)
                            to_ac[index].append(first)
                            whole[index].append(total)
                        cpu[index] += cpu_seconds(process.pid) - before
                for index, source in enumerate(sources):
                    times = sorted(to_ac[index])
                    count = len(times)
                    print(f"{tool} ({len(request)}-byte request), {source}: connect to "
                          f"A-ASSOCIATE-AC median {1000 * statistics.median(times):.2f} ms "
                          f"(p10 {1000 * times[count // 10]:.2f}, p90 "
                          f"{1000 * times[9 * count // 10]:.2f}); whole association "
                          f"{1000 * statistics.median(whole[index]):.2f} ms; server CPU "
                          f"{1000 * cpu[index] / count:.2f} ms per association")
            if args.study is not None:
                measure_gets(servers, sources, args.study, args.gets, Path(work))
        finally:
            for process, _ in servers:
                process.terminate()
                process.wait(30)


if __name__ == "__main__":
    main()
