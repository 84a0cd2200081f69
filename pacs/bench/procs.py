"""Processes for the benchmark: free ports, servers in their own process group, clients with
timeouts, readiness by TCP connect, peak memory, CPU time and threads of a process tree,
established connections on a port, disk usage of folders.

Layer: tool (pacs.bench); standard library only. Every process started here is in its own
process group and is registered with a `ProcessRegistry`, which stops them all on exit,
exception or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (bind to port 0 and ask)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK tools: TCP_NODELAY on (DCMTK 3.6.7 reads it from here)."""
    return {**os.environ, "TCP_NODELAY": "1"}


def _kill_group(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=10)


class ProcessRegistry:
    """Every long-running process the benchmark started; `stop_all` ends them (group-wide)."""

    def __init__(self) -> None:
        self._processes: list[subprocess.Popen[bytes]] = []

    def spawn(self, command: Sequence[str], log: Path, cwd: Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `command` in a new process group, output appended to `log`."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(
                list(command), stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                env=env, start_new_session=True,
            )
        self._processes.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], grace: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL after `grace` seconds; returns the exit code."""
        _kill_group(process, grace)
        if process in self._processes:
            self._processes.remove(process)
        return process.returncode

    def stop_all(self) -> None:
        """Stop every process still registered, newest first."""
        for process in reversed(list(self._processes)):
            try:
                self.stop(process, grace=5.0)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass


def _interrupt(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def workspace(workdir: Path | None, prefix: str,
              command: str) -> Iterator[tuple[Path, ProcessRegistry]]:
    """A folder for the servers (`workdir`, kept; else a temp folder named `prefix`…, removed)
    and a ProcessRegistry stopped when the block ends, also on Ctrl-C and on SIGTERM (raised
    in the block as KeyboardInterrupt); `command` begins the line said on an interrupt."""
    temporary = workdir is None
    work = Path(tempfile.mkdtemp(prefix=prefix)) if workdir is None else workdir
    work.mkdir(parents=True, exist_ok=True)
    registry = ProcessRegistry()
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield work, registry
    except KeyboardInterrupt:
        print(f"{command}: interrupted: stopping every process started", file=sys.stderr,
              flush=True)
        raise
    finally:
        registry.stop_all()
        signal.signal(signal.SIGTERM, previous)
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


def wait_for_port(port: int, process: subprocess.Popen[bytes] | None = None,
                  timeout: float = 60.0, log: Path | None = None) -> None:
    """Poll a TCP connect to 127.0.0.1:`port` until it succeeds; fail if the process exits."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {process.returncode} before listening\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")
        time.sleep(0.05)


@dataclass
class ClientResult:
    """A finished (or timed-out) client run: exit code, output, wall-clock seconds."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False

    @property
    def output(self) -> str:
        """stdout and stderr together (DCMTK logs to either)."""
        return self.stdout + self.stderr


def run_client(command: Sequence[str], timeout: float, env: dict[str, str] | None = None,
               cwd: Path | None = None) -> ClientResult:
    """Run a client to completion, bounded by `timeout` seconds (its group is killed after)."""
    start = time.perf_counter()
    process = subprocess.Popen(list(command), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=env, cwd=cwd, start_new_session=True)
    try:
        out, err = process.communicate(timeout=max(timeout, 0.1))
        timed_out = False
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
        timed_out = True
    except BaseException:
        _kill_group(process, 1.0)
        raise
    seconds = time.perf_counter() - start
    return ClientResult(process.returncode, out.decode(errors="replace"),
                        err.decode(errors="replace"), seconds, timed_out)


def run_clients_parallel(commands: Sequence[Sequence[str]], timeout: float,
                         env: dict[str, str] | None = None) -> list[ClientResult]:
    """Run clients at once, all bounded by `timeout`; on timeout or Ctrl-C all are killed."""
    start = time.perf_counter()
    processes = [subprocess.Popen(list(command), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=env, start_new_session=True)
                 for command in commands]
    outputs: list[tuple[bytes, bytes, float]] = [(b"", b"", 0.0)] * len(processes)

    def drain(index: int) -> None:
        out, err = processes[index].communicate()
        outputs[index] = (out, err, time.perf_counter() - start)

    threads = [threading.Thread(target=drain, args=(i,), daemon=True)
               for i in range(len(processes))]
    try:
        for thread in threads:
            thread.start()
        deadline = start + max(timeout, 0.1)
        for thread in threads:
            thread.join(max(0.0, deadline - time.perf_counter()))
        timed_out = [thread.is_alive() for thread in threads]
        if any(timed_out):
            for process in processes:
                _kill_group(process, 0.0)
            for thread in threads:
                thread.join(10)
    except BaseException:
        for process in processes:
            _kill_group(process, 0.0)
        raise
    return [ClientResult(process.returncode if process.returncode is not None else -9,
                         out.decode(errors="replace"), err.decode(errors="replace"),
                         seconds or time.perf_counter() - start, late)
            for process, (out, err, seconds), late in zip(processes, outputs, timed_out,
                                                          strict=True)]


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
        except OSError:
            continue
        found.extend(int(child) for child in text.split())
    return found


def _rss_bytes(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_pids(pid: int) -> list[int]:
    """`pid` and all its descendants alive now."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(_children(current))
    return pids


class RssSampler:
    """Samples the summed RSS of a process tree every `interval` s; `peak` is the largest.

    Forking servers (dcmqrscp, storescp --fork, minipacs --workers) keep part of their
    memory in short-lived children whose VmHWM dies with them, so sampling the tree is the
    only uniform measure; the root's own VmHWM is added as a floor at the end.
    """

    def __init__(self, pid: int, interval: float = 0.1):
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            total = sum(_rss_bytes(pid) for pid in tree_pids(self.pid))
            self.peak = max(self.peak, total)
            self._stop.wait(self.interval)

    def stop(self) -> int:
        """Stop sampling; the peak in bytes (at least the root process's VmHWM)."""
        self.peak = max(self.peak, _rss_bytes(self.pid, "VmHWM"))
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int) -> int:
    """utime + stime + cutime + cstime of one process (its reaped children included)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    fields = text[text.rfind(")") + 2:].split()  # after "pid (comm) ": state is fields[0]
    try:
        return sum(int(value) for value in fields[11:15])
    except (ValueError, IndexError):
        return 0


def tree_cpu_seconds(*pids: int) -> float:
    """User + system CPU seconds used so far by the process trees rooted at `pids`.

    Each process counts its own time plus that of the children it reaped, so the sum over a
    tree stays right while forking servers' children come and go (a reaped child's time
    moves into its parent's).
    """
    seen: set[int] = set()
    ticks = 0
    for root in pids:
        for pid in tree_pids(root):
            if pid not in seen:
                seen.add(pid)
                ticks += _cpu_ticks(pid)
    return ticks / _TICKS


def disk_usage(*paths: Path) -> int:
    """Bytes allocated on disk (like `du -s --bytes` of blocks) under the given paths."""
    total = 0
    for root in paths:
        if root.is_file():
            total += root.stat().st_blocks * 512
            continue
        for folder, _dirs, files in os.walk(root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_blocks * 512
                except OSError:
                    pass
    return total


def count_files(folder: Path) -> int:
    """Regular files under `folder`, recursively (0 if it does not exist)."""
    if not folder.exists():
        return 0
    return sum(len(files) for _folder, _dirs, files in os.walk(folder))


def _thread_count(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_threads(*pids: int) -> tuple[int, int]:
    """(threads, processes) alive now in the process trees rooted at `pids` (/proc status)."""
    seen: set[int] = set()
    threads = 0
    for root in pids:
        for pid in tree_pids(root):
            if pid in seen:
                continue
            seen.add(pid)
            threads += _thread_count(pid)
    return threads, len(seen)


def established_connections(port: int) -> int:
    """TCP connections in state ESTABLISHED whose local port is `port` (IPv4 and IPv6)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            # fields[1] is local "ADDR:PORT" in hex, fields[3] the state (01: ESTABLISHED)
            if len(fields) > 3 and fields[3] == "01" and int(fields[1].rsplit(":", 1)[1],
                                                             16) == port:
                count += 1
    return count
