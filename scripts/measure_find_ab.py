#!/usr/bin/env python3
"""C-FIND latency and server CPU of several checkouts side by side, measured interleaved.

Serves one index (built once: `scripts/bench index`'s population, 3,000 instances, no files)
with `pacs serve` from each checkout given, and times, batch by batch in turn on every server
so that a busy machine weighs on all alike:
- association set-up with the lean SCU (TCP connect to A-ASSOCIATE-AC), then its release;
- a whole association: connect, one C-FIND (series of a study), release;
- one C-FIND on an open association, per shape (an empty result, then four shapes);
- with `--findscu`, DCMTK findscu per query (one process and association each);
and the server's CPU time per operation (utime + stime of its process, /proc).

    .venv/bin/python scripts/measure_find_ab.py --rounds 400 /tmp/main-checkout .
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pydicom.dataset import Dataset  # noqa: E402
from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind  # noqa: E402

from pacs.bench.cmd_index import Population, Sample, _query  # noqa: E402
from pacs.bench.lean_scu import LeanSCU  # noqa: E402
from pacs.index.database import Index  # noqa: E402

STUDY_ROOT = StudyRootQueryRetrieveInformationModelFind
INSTANCES = 3000
BATCH = 25
TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def _index(folder: Path) -> tuple[str, list[Sample]]:
    """The index (made once in `folder`) and the population's query targets."""
    population = Population()
    entries = population.entries()
    path = folder / f"index-{INSTANCES}.sqlite"
    if path.exists():
        for _ in range(INSTANCES):
            next(entries)
    else:
        index = Index(f"sqlite:///{path}")
        index.add_instances_bulk(next(entries) for _ in range(INSTANCES))
        index.analyze()
        index.close()
    return f"sqlite:///{path}", population.samples


def _serve(source: Path, url: str) -> tuple[subprocess.Popen[bytes], int]:
    folder = Path(tempfile.mkdtemp(prefix="find-ab-"))
    (folder / "empty.toml").write_text("")
    ready = folder / "ready"
    env = {key: value for key, value in os.environ.items() if not key.startswith("PACS_")}
    env["PYTHONPATH"] = str(source)
    command = [sys.executable, "-m", "pacs", "serve", "--config", str(folder / "empty.toml"),
               "--host", "127.0.0.1", "--port", "0", "--storage", str(folder / "archive"),
               "--database", url, "--ready-file", str(ready), "--http-port", "auto"]
    with open(folder / "server.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, cwd=folder, env=env)
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"pacs serve from {source} did not start (see {folder})")
        time.sleep(0.05)
    return process, int(ready.read_text().split()[1])


def _cases(samples: list[Sample], findscu: bool) -> list[tuple[str, Callable[[int], float]]]:
    open_scus: dict[int, LeanSCU] = {}

    def setup(port: int) -> float:
        started = time.perf_counter()
        scu = LeanSCU(port)
        elapsed = time.perf_counter() - started
        scu.release()
        return elapsed

    def whole(port: int) -> float:
        started = time.perf_counter()
        scu = LeanSCU(port)
        scu.find(STUDY_ROOT, _query("series-of-study", samples[3])[1])
        scu.release()
        return time.perf_counter() - started

    def on_open(shape: str) -> Callable[[int], float]:
        empty = Dataset()
        empty.QueryRetrieveLevel, empty.PatientID, empty.StudyInstanceUID = "STUDY", "NONE", ""
        turn = [0]

        def run(port: int) -> float:
            scu = open_scus.get(port) or open_scus.setdefault(port, LeanSCU(port))
            turn[0] += 1
            sop_class, identifier = (STUDY_ROOT, empty) if shape == "empty" else _query(
                shape, samples[turn[0] % len(samples)])
            started = time.perf_counter()
            _, final = scu.find(sop_class, identifier)
            if final != 0x0000:
                raise RuntimeError(f"{shape}: final status {final:#06x}")
            return time.perf_counter() - started
        return run

    def dcmtk(port: int) -> float:
        _, identifier = _query("series-of-study", samples[3])
        keys = [arg for element in identifier
                for arg in ("-k", f"{element.keyword}={element.value}")]
        started = time.perf_counter()
        subprocess.run(["findscu", "-aet", "BENCH", "-aec", "MINIPACS", "-S", *keys,
                        "127.0.0.1", str(port)], env={**os.environ, "TCP_NODELAY": "1"},
                       capture_output=True, check=True)
        return time.perf_counter() - started

    cases = [("set-up (connect -> AC)", setup), ("connect, C-FIND, release", whole)]
    cases += [(f"C-FIND on an open association: {shape}", on_open(shape))
              for shape in ("empty", "patient-by-id", "study-by-name-wildcard",
                            "series-of-study", "images-of-series")]
    if findscu:
        cases.append(("findscu per query", dcmtk))
    return cases


def main() -> int:
    """Serve, measure interleaved, print one line per case."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="folders holding a `pacs`")
    parser.add_argument("--rounds", type=int, default=400, help="operations per case")
    parser.add_argument("--findscu", action="store_true", help="also time DCMTK findscu")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    arguments = parser.parse_args()
    url, samples = _index(arguments.workdir)
    servers = [_serve(source.resolve(), url) for source in arguments.checkouts]
    try:
        for name, case in _cases(samples, arguments.findscu):
            rounds = arguments.rounds // 5 if name.startswith("findscu") else arguments.rounds
            walls: list[list[float]] = [[] for _ in servers]
            cpu = [0.0 for _ in servers]
            for _ in range(max(1, rounds // BATCH)):
                for number, (process, port) in enumerate(servers):
                    before = _cpu_seconds(process.pid)
                    walls[number] += [case(port) for _ in range(BATCH)]
                    cpu[number] += _cpu_seconds(process.pid) - before
            print(f"{name:40s}" + "".join(
                f" | {source.name or '.'}: {statistics.median(wall) * 1000:.3f} ms, "
                f"CPU {seconds / len(wall) * 1000:.3f} ms"
                for source, wall, seconds in zip(arguments.checkouts, walls, cpu, strict=True)),
                flush=True)
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
