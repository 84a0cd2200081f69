"""The servers the benchmark compares: minipacs, DCMTK dcmqrscp, Orthanc, and DCMTK storescp
(the reference for receiving, and the C-MOVE destination).

Layer: tool (pacs.bench). Each peer starts as a plain process in a folder of its own, on a free
loopback port, with its shipped defaults except what the benchmark needs (ports, folders, the
move destination, permissions); `config` says what was set so the report can print it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pacs.bench.pgtemp import Databases
from pacs.bench.procs import ProcessRegistry, dcmtk_env, disk_usage, free_port, wait_for_port

CALLING_AE = "BENCH"
DESTINATION_AE = "BENCHDEST"
STORESCP_OPTIONS = ("--fork",)  # same for the reference peer and the C-MOVE destination


def _missing(tool: str, package: str) -> str | None:
    if shutil.which(tool):
        return None
    return f"{tool} not installed (apt-get install {package})"


def tool_version(command: list[str]) -> str:
    """The first informative line of `command` (a --version call), or '' when absent."""
    if shutil.which(command[0]) is None:
        return ""
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    for line in (result.stdout + result.stderr).splitlines():
        line = line.strip().strip("$").strip()
        if line:
            return line
    return ""


def debian_version(package: str) -> str:
    """The installed version of a Debian package, or '' when it is not installed."""
    if shutil.which("dpkg-query") is None:
        return ""
    result = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                            capture_output=True, text=True, timeout=10)
    return result.stdout.strip() if result.returncode == 0 else ""


@dataclass
class Destination:
    """Where C-MOVE sends: an AE title on 127.0.0.1 and a port."""

    ae_title: str
    port: int


@dataclass
class Running:
    """One started server: its process, port and the folders holding what it stored."""

    process: subprocess.Popen[bytes]
    port: int
    folder: Path
    data_paths: list[Path]
    log: Path
    database_url: str | None = None
    http_port: int | None = None  # DICOMweb, when the peer serves it
    dicomweb_root: str = "/dicom-web"


@dataclass
class Peer:
    """A kind of server the benchmark can start; subclasses fill in the command."""

    name: str
    ae_title: str
    archive: bool = True  # False: a receiver only (storescp), no query or retrieve
    dicomweb: bool = False  # serves QIDO-RS, WADO-RS and STOW-RS on `Running.http_port`
    config: dict[str, object] = field(default_factory=dict)

    def available(self) -> str | None:
        """None when this peer can run here, else why not."""
        return None

    def version(self) -> str:
        """The server's exact version."""
        return ""

    def start(self, folder: Path, registry: ProcessRegistry,
              destination: Destination | None) -> Running:
        """Start a fresh server with empty storage in `folder`; returns once it listens."""
        raise NotImplementedError

    def disk_bytes(self, running: Running) -> int:
        """Bytes on disk of everything the server stored (files and index)."""
        return disk_usage(*[path for path in running.data_paths if path.exists()])

    def cpu_pids(self, running: Running) -> list[int]:
        """Roots of the process trees whose CPU time is the server's (itself, by default)."""
        return [running.process.pid]

    def stop(self, running: Running, registry: ProcessRegistry) -> None:
        """Stop the server (SIGTERM its process group; SIGKILL if it lingers)."""
        registry.stop(running.process)


class MinipacsPeer(Peer):
    """`python -m pacs serve` on SQLite (default) or PostgreSQL; from this checkout, or from
    `source` (another checkout's folder, e.g. an earlier commit to compare within one run)."""

    def __init__(self, name: str = "minipacs", database: str = "sqlite",
                 extra_args: tuple[str, ...] = (), source: Path | None = None):
        super().__init__(name=name, ae_title="MINIPACS", dicomweb=True)
        self.database = database  # "sqlite", or a postgresql:// URL to make databases next to
        self.extra_args = extra_args
        self.source = source
        self.databases = Databases(database) if database != "sqlite" else None
        self.toml = ""  # the config file's text; `scripts/bench idle` sets [timeouts] here
        # The PostgreSQL server's postmaster, when it runs here: its CPU is the index's.
        self.index_pid: int | None = None
        args = " ".join(extra_args) or "defaults (max PDU 256 KiB, INFO log)"
        self.config = {"index": "SQLite" if self.databases is None else "PostgreSQL",
                       "args": args + (f"; code from {source}" if source else "")}

    def version(self) -> str:
        """minipacs's package version."""
        from pacs import __version__

        return f"minipacs {__version__}" + (f" ({self.source})" if self.source else "")

    def cpu_pids(self, running: Running) -> list[int]:
        """The server, plus the PostgreSQL server it indexes into when that runs here."""
        return [running.process.pid, *([self.index_pid] if self.index_pid else [])]

    def start(self, folder: Path, registry: ProcessRegistry,
              destination: Destination | None) -> Running:
        """Start `pacs serve` and wait for its ready file, then for a TCP connect."""
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "empty.toml"
        config.write_text(self.toml)
        ready = folder / "ready"
        if self.databases is None:
            url = f"sqlite:///{folder}/index.sqlite"
            data_paths = [folder / "archive", folder / "index.sqlite",
                          folder / "index.sqlite-wal", folder / "index.sqlite-shm"]
        else:
            url = self.databases.new()
            data_paths = [folder / "archive"]
        command = [sys.executable, "-m", "pacs", "serve", "--config", str(config),
                   "--host", "127.0.0.1", "--port", "0", "--storage", str(folder / "archive"),
                   "--database", url, "--ready-file", str(ready), "--http-port", "auto"]
        if destination is not None:
            command += ["--remote", f"{destination.ae_title}@127.0.0.1:{destination.port}"]
        command += list(self.extra_args)
        log = folder / "server.log"
        env = {key: value for key, value in dcmtk_env().items() if not key.startswith("PACS_")}
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)  # its `pacs` shadows the installed one
        process = registry.spawn(command, log, cwd=folder, env=env)
        port = _wait_ready_file(ready, process, log)
        wait_for_port(port, process, log=log)
        http = next((int(word[5:]) for word in ready.read_text().split()
                     if word.startswith("http=")), None)
        return Running(process, port, folder, data_paths, log, database_url=url,
                       http_port=http)

    def disk_bytes(self, running: Running) -> int:
        """Archive files plus the SQLite file or the PostgreSQL database size."""
        total = super().disk_bytes(running)
        if self.databases is not None and running.database_url:
            total += Databases.size(running.database_url)
        return total

    def stop(self, running: Running, registry: ProcessRegistry) -> None:
        """Stop the server; PostgreSQL databases are dropped at the end of the run."""
        registry.stop(running.process, grace=20.0)


def _wait_ready_file(ready: Path, process: subprocess.Popen[bytes], log: Path,
                     timeout: float = 60.0) -> int:
    import time

    deadline = time.monotonic() + timeout
    while not (ready.exists() and ready.read_text().strip()):
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"minipacs exited with {process.returncode}:\n{tail}")
        if time.monotonic() > deadline:
            raise TimeoutError("minipacs did not write its ready file")
        time.sleep(0.05)
    return int(ready.read_text().split()[1])


class DcmqrscpPeer(Peer):
    """DCMTK's dcmqrscp: forks a child per association (its default), max PDU 16 KiB."""

    def __init__(self) -> None:
        super().__init__(name="dcmqrscp", ae_title="DCMQRSCP",
                         config={"args": "defaults: --fork, MaxPDUSize 16384"})
        self.max_associations = 16  # MaxAssociations: forked children at once

    def available(self) -> str | None:
        """Needs the dcmqrscp binary (Debian package dcmtk)."""
        return _missing("dcmqrscp", "dcmtk")

    def version(self) -> str:
        """`dcmqrscp --version`."""
        return tool_version(["dcmqrscp", "--version"])

    def start(self, folder: Path, registry: ProcessRegistry,
              destination: Destination | None) -> Running:
        """Write dcmqrscp.cfg (AE table, host table with the destination) and start it."""
        storage = folder / "storage"
        storage.mkdir(parents=True, exist_ok=True)
        port = free_port()
        hosts = (f"benchdest = ({destination.ae_title}, 127.0.0.1, {destination.port})\n"
                 if destination else "")
        (folder / "dcmqrscp.cfg").write_text(
            f"NetworkTCPPort  = {port}\nMaxPDUSize      = 16384\n"
            f"MaxAssociations = {self.max_associations}\n\n"
            f"HostTable BEGIN\n{hosts}HostTable END\n\nVendorTable BEGIN\nVendorTable END\n\n"
            f"AETable BEGIN\n{self.ae_title}  {storage}  RW  (500, 1024mb)  ANY\nAETable END\n"
        )
        log = folder / "server.log"
        process = registry.spawn(["dcmqrscp", "-c", str(folder / "dcmqrscp.cfg")], log,
                                 cwd=folder, env=dcmtk_env())
        wait_for_port(port, process, log=log)
        return Running(process, port, folder, [storage], log)


def dicomweb_plugin() -> str | None:
    """Debian's orthanc-dicomweb plugin library, when installed."""
    import glob

    found = sorted(glob.glob("/usr/lib/orthanc/libOrthancDicomWeb.so*")
                   + glob.glob("/usr/share/orthanc/plugins/libOrthancDicomWeb.so*"))
    return found[-1] if found else None


class OrthancPeer(Peer):
    """Orthanc (Debian's package) as a plain process on a JSON config in a temp folder, with
    its DICOMweb plugin (Debian's orthanc-dicomweb) when installed."""

    def __init__(self) -> None:
        self.plugin = dicomweb_plugin()
        plugins = "DICOMweb plugin (defaults)" if self.plugin else "no plugins"
        super().__init__(name="orthanc", ae_title="ORTHANC", dicomweb=self.plugin is not None,
                         config={"args": "defaults (SQLite index, MaximumPduLength 16384, "
                                         "SyncStorageArea true, StorageAccessOnFind Always); "
                                         + plugins})
        self.overrides: dict[str, object] = {}  # config.json keys set on top of the above

    def available(self) -> str | None:
        """Needs the Orthanc binary (Debian package orthanc)."""
        return _missing("Orthanc", "orthanc")

    def version(self) -> str:
        """`Orthanc --version`, and the DICOMweb plugin's Debian version."""
        version = tool_version(["Orthanc", "--version"])
        if self.plugin:
            version += f"; orthanc-dicomweb {debian_version('orthanc-dicomweb') or '?'}"
        return version

    def start(self, folder: Path, registry: ProcessRegistry,
              destination: Destination | None) -> Running:
        """Write config.json (ports, folders, permissions, the destination) and start Orthanc."""
        storage = folder / "storage"
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        storage.mkdir(parents=True, exist_ok=True)
        port, http_port = free_port(), free_port()
        modalities = ({"benchdest": [destination.ae_title, "127.0.0.1", destination.port]}
                      if destination else {})
        config = {
            "Name": "minipacs-bench", "StorageDirectory": str(storage),
            "IndexDirectory": str(storage), "TemporaryDirectory": str(folder / "tmp"),
            "Plugins": [self.plugin] if self.plugin else [], "HttpServerEnabled": True,
            "HttpPort": http_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "DicomServerEnabled": True, "DicomAet": self.ae_title, "DicomPort": port,
            "DicomCheckCalledAet": False, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True, "DicomAlwaysAllowFind": True,
            "DicomAlwaysAllowGet": True, "DicomAlwaysAllowMove": True,
            "DicomModalities": modalities, "SaveJobs": False,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            **self.overrides,
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2))
        log = folder / "server.log"
        # Orthanc's network layer is DCMTK's: TCP_NODELAY=1 turns Nagle off as for the others.
        process = registry.spawn(["Orthanc", str(folder / "config.json")], log, cwd=folder,
                                 env=dcmtk_env())
        wait_for_port(port, process, log=log)
        wait_for_port(http_port, process, log=log)
        return Running(process, port, folder, [storage], log,
                       http_port=http_port if self.plugin else None)


class StorescpPeer(Peer):
    """DCMTK's storescp writing every received instance to a folder: the receiving limit."""

    def __init__(self, name: str = "storescp", ae_title: str = "STORESCP") -> None:
        super().__init__(name=name, ae_title=ae_title, archive=False,
                         config={"args": " ".join(STORESCP_OPTIONS) + " -od DIR "
                                 "(max PDU 16384, writes files)"})

    def available(self) -> str | None:
        """Needs the storescp binary (Debian package dcmtk)."""
        return _missing("storescp", "dcmtk")

    def version(self) -> str:
        """`storescp --version`."""
        return tool_version(["storescp", "--version"])

    def start(self, folder: Path, registry: ProcessRegistry,
              destination: Destination | None = None) -> Running:
        """Start storescp writing into `folder`/received."""
        received = folder / "received"
        received.mkdir(parents=True, exist_ok=True)
        port = free_port()
        log = folder / "server.log"
        command = ["storescp", *STORESCP_OPTIONS, "-aet", self.ae_title, "-od", str(received),
                   str(port)]
        process = registry.spawn(command, log, cwd=folder, env=dcmtk_env())
        wait_for_port(port, process, log=log)
        return Running(process, port, folder, [received], log)


class SelectionError(ValueError):
    """A `--peers` or `--minipacs-from` value that names no peer or no checkout; its text is
    the one-line message a command prints after its own prefix."""


def parse_peer_selection(peers: str, minipacs_from: Sequence[str],
                         allowed: Sequence[str]) -> tuple[list[str], list[tuple[str, Path]]]:
    """The peer names of a comma-separated `--peers` value (each one of `allowed`) and the
    (label, resolved folder) pairs of the `--minipacs-from LABEL=DIR` values, each folder a
    checkout holding pacs/. Raises SelectionError naming the option at fault."""
    names = [name.strip() for name in peers.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise SelectionError(f"--peers: unknown {', '.join(unknown) or '(none given)'}; "
                             f"choose from {','.join(allowed)}")
    sources: list[tuple[str, Path]] = []
    for item in minipacs_from:
        label, equals, folder = item.partition("=")
        if not equals:
            raise SelectionError("--minipacs-from takes LABEL=DIR")
        sources.append((label, Path(folder).resolve()))
    if any(not (folder / "pacs").is_dir() for _label, folder in sources):
        raise SelectionError("--minipacs-from needs a checkout folder holding pacs/")
    return names, sources


def make_peers(names: list[str], databases: list[str],
               minipacs_args: tuple[str, ...] = (), workers: Sequence[int] = (1,),
               sources: Sequence[tuple[str, Path]] = ()) -> list[Peer]:
    """Peer objects for the names asked for; minipacs once per database (sqlite, PostgreSQL)
    and worker count, then once per other checkout in `sources` ((label, folder) pairs)."""
    peers: list[Peer] = []
    for name in names:
        if name == "minipacs":
            for database in databases:
                label = "minipacs" if database == "sqlite" else "minipacs-pg"
                if len([d for d in databases if d != "sqlite"]) > 1 and database != "sqlite":
                    label = f"minipacs-pg{databases.index(database)}"
                for count in workers:
                    extra = minipacs_args if count == 1 else (*minipacs_args, "--workers",
                                                              str(count))
                    peers.append(MinipacsPeer(label + (f"-w{count}" if count != 1 else ""),
                                              database, extra))
                for source_label, folder in sources:
                    peers.append(MinipacsPeer(f"{label}@{source_label}", database,
                                              minipacs_args, source=folder))
        elif name == "dcmqrscp":
            peers.append(DcmqrscpPeer())
        elif name == "orthanc":
            peers.append(OrthancPeer())
        elif name == "storescp":
            peers.append(StorescpPeer())
        else:
            raise ValueError(f"unknown peer {name!r} (minipacs, dcmqrscp, orthanc, storescp)")
    return peers
