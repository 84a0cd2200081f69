#!/usr/bin/env python3
"""C-MOVE of one study to DCMTK storescp from several checkouts, measured interleaved.

Makes one study (`--instances`, 512×512 CT, Explicit VR Little Endian), imports it into a
fresh archive per checkout, serves each with `pacs serve` from that checkout (all with
`--remote DEST@` one storescp --fork, as `scripts/bench` does) and runs, round by round and
in alternating order so that a busy machine weighs on all alike, one movescu -S C-MOVE of the
study per server. Reports per checkout the medians of: movescu's wall time (process start to
exit, as the bench times it), the server's own duration of the C-MOVE (its operations log
line); and the server's CPU time per C-MOVE, the mean (utime + stime of its process, /proc,
counted in 10 ms ticks).

    .venv/bin/python scripts/measure_move_ab.py --rounds 100 before=/tmp/before .
    .venv/bin/python scripts/measure_move_ab.py --close-delay 0 before=/tmp/before .

`--close-delay` is `retrieve.association_close_delay` (5: every C-MOVE after the first
takes the destination association over; 0: each opens its own).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measure_move_rate import free_port, make_study, wait_for_port  # noqa: E402

ENV = {**os.environ, "TCP_NODELAY": "1"}
_DURATION = re.compile(r"operation=C-MOVE status=0x0000 duration_ms=([0-9.]+)")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(label: str, checkout: Path, work: Path, source: Path, dest_port: int,
                 close_delay: float) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`pacs serve` from `checkout` over its own archive of the study; (process, port, log)."""
    folder = work / label
    folder.mkdir(parents=True)
    config = folder / "pacs.toml"
    config.write_text(f"[retrieve]\nassociation_close_delay = {close_delay}\n")
    settings = ["--config", str(config), "--storage", str(folder / "archive"),
                "--database", f"sqlite:///{folder}/index.sqlite", "--log-level", "INFO"]
    shutil.copytree(source, folder / "staged")  # `pacs import` moves files
    # `python -m pacs` from the checkout's folder imports that checkout's pacs.
    subprocess.run([sys.executable, "-m", "pacs", "import", *settings, str(folder / "staged")],
                   cwd=checkout, check=True, env=ENV, stdout=subprocess.DEVNULL)
    ready, log = folder / "ready", folder / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "pacs", "serve", *settings, "--host", "127.0.0.1", "--port", "0",
         "--http-port", "0", "--remote", f"DEST@127.0.0.1:{dest_port}",
         "--ready-file", str(ready)],
        cwd=checkout, env=ENV, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    deadline = time.monotonic() + 60
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{label}: pacs serve did not start (see {log})")
        time.sleep(0.05)
    return process, ready.read_text().split()[1], log


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", metavar="[LABEL=]DIR")
    parser.add_argument("--instances", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--close-delay", type=float, default=5.0)
    parser.add_argument("--pause", type=float, default=0.1, help="seconds between C-MOVEs")
    arguments = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minipacs-move-ab-"))
    source, received = work / "source", work / "received"
    received.mkdir(parents=True)
    study = make_study(source, arguments.instances, 512, 512)
    dest_port = free_port()
    storescp = subprocess.Popen(["storescp", "--fork", "-aet", "DEST", "-od", str(received),
                                 str(dest_port)], env=ENV, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
    servers: dict[str, tuple[subprocess.Popen[bytes], str, Path]] = {}
    try:
        wait_for_port(dest_port, storescp)
        for number, spec in enumerate(arguments.checkouts):
            label, _, folder = spec.rpartition("=")
            label = label or f"{number}:{Path(folder).resolve().name}"
            servers[label] = start_server(label, Path(folder).resolve(), work, source,
                                          dest_port, arguments.close_delay)
        walls: dict[str, list[float]] = {label: [] for label in servers}
        cpus: dict[str, list[float]] = {label: [] for label in servers}
        for round_number in range(arguments.rounds):
            order = list(servers) if round_number % 2 == 0 else list(servers)[::-1]
            for label in order:
                process, port, _ = servers[label]
                command = ["movescu", "-aet", "MOVESCU", "-aec", "MINIPACS", "-aem", "DEST",
                           "-S", "-k", "QueryRetrieveLevel=STUDY",
                           "-k", f"StudyInstanceUID={study}", "127.0.0.1", port]
                cpu_before, started = cpu_seconds(process.pid), time.monotonic()
                result = subprocess.run(command, env=ENV, capture_output=True, text=True)
                walls[label].append(time.monotonic() - started)
                cpus[label].append(cpu_seconds(process.pid) - cpu_before)
                files = [path for path in received.iterdir() if path.is_file()]
                if result.returncode != 0 or len(files) != arguments.instances:
                    raise SystemExit(f"{label}: movescu failed or {len(files)} files arrived:"
                                     f"\n{result.stdout}{result.stderr}")
                for path in files:
                    path.unlink()
                time.sleep(arguments.pause)
        print(f"C-MOVE of one study ({arguments.instances} instances) to storescp --fork, "
              f"close delay {arguments.close_delay:g} s, {arguments.rounds} rounds interleaved")
        for label, (_, _, log) in servers.items():
            durations = [float(v) for v in _DURATION.findall(log.read_text())]
            wall = statistics.median(walls[label])
            print(f"  {label:>12}: movescu {1000 * wall:6.1f} ms ({arguments.instances / wall:4.0f}"
                  f"/s)  server duration {statistics.median(durations):6.2f} ms  server CPU "
                  f"{1000 * statistics.fmean(cpus[label]):5.1f} ms per C-MOVE (mean)")
    finally:
        for process, _, _ in servers.values():
            process.terminate()
            process.wait(timeout=30)
        storescp.terminate()
        storescp.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
