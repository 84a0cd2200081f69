"""`pacs serve --workers N`: N server processes accepting on one port (SO_REUSEPORT).

Room: cli/. Standard library only; no pynetdicom. The supervisor only starts, watches and stops
worker processes; each worker is a plain `pacs serve` that opens its own index connection.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("pacs.workers")
_RESTART_PAUSE = 1.0


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind (not listen) a SO_REUSEPORT socket, to learn and hold the port workers will share."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind((host, port))
    return holder


def worker_arguments(argv: Sequence[str], port: int, ready_file: Path,
                     http_port: int | None = None) -> list[str]:
    """The `pacs serve` arguments of one worker: ours, minus supervisor-only flags."""
    dropped_with_value = {"--workers", "--port", "--ready-file", "--http-port"}
    kept: list[str] = []
    skip = False
    for argument in argv:
        if skip:
            skip = False
            continue
        name = argument.split("=", 1)[0]
        if name in dropped_with_value:
            skip = "=" not in argument
            continue
        kept.append(argument)
    http = ["--http-port", str(http_port)] if http_port is not None else []
    return [*kept, "--port", str(port), *http, "--ready-file", str(ready_file), "--reuse-port"]


class Supervisor:
    """Starts N workers on one port, restarts any that dies, and stops them all on request."""

    def __init__(self, argv: Sequence[str], host: str, port: int, count: int,
                 http: tuple[str, int] | None = None):
        self.argv = list(argv)
        self.count = count
        self.holder = reserve_port(host, port)
        self.host, self.port = self.holder.getsockname()[:2]
        # The HTTP port too is learnt once and shared (0: off; negative: any free port).
        self.http_holder = reserve_port(http[0], max(http[1], 0)) if http and http[1] else None
        self.http_port = self.http_holder.getsockname()[1] if self.http_holder else None
        self.folder = Path(tempfile.mkdtemp(prefix="minipacs-workers-"))
        self.processes: list[subprocess.Popen[bytes] | None] = [None] * count

    def _spawn(self, number: int) -> subprocess.Popen[bytes]:
        ready = self.folder / f"ready-{number}"
        ready.unlink(missing_ok=True)
        command = [sys.executable, "-m", "pacs",
                   *worker_arguments(self.argv, self.port, ready, self.http_port)]
        process = subprocess.Popen(command)
        log.info("worker %d started (pid %d) on port %d", number, process.pid, self.port)
        self.processes[number] = process
        return process

    def start(self, timeout: float = 60) -> None:
        """Start every worker and wait until each listens."""
        for number in range(self.count):
            self._spawn(number)
        deadline = time.monotonic() + timeout
        for number in range(self.count):
            ready = self.folder / f"ready-{number}"
            while not (ready.exists() and ready.read_text().strip()):
                process = self.processes[number]
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"worker {number} exited with {process.returncode}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker {number} did not start")
                time.sleep(0.05)

    def watch(self, stop_requested: threading.Event) -> None:
        """Restart workers that die, until a stop is requested."""
        while not stop_requested.wait(0.5):
            for number, process in enumerate(self.processes):
                if process is not None and process.poll() is not None:
                    log.error("worker %d (pid %d) exited with %s; restarting", number,
                              process.pid, process.returncode)
                    time.sleep(_RESTART_PAUSE)
                    self._spawn(number)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM every worker (each drains its associations) and wait; the worst exit code."""
        for process in self.processes:
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        worst = 0
        deadline = time.monotonic() + timeout
        for process in self.processes:
            if process is None:
                continue
            try:
                code = process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                code = process.wait()
            worst = max(worst, abs(code))
        self.holder.close()
        if self.http_holder is not None:
            self.http_holder.close()
        for leftover in self.folder.iterdir():
            leftover.unlink(missing_ok=True)
        os.rmdir(self.folder)
        return worst
