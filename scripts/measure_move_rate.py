#!/usr/bin/env python3
"""Measure the C-MOVE rate of minipacs next to DCMTK storescu, same files, same storescp.

    .venv/bin/python scripts/measure_move_rate.py [--instances 1000] [--rows 512 --columns 512]

Makes one study of N CT instances (16-bit, Explicit VR Little Endian), imports it with
`pacs import`, starts `pacs serve` as its own process with `--remote DEST@127.0.0.1:PORT`,
starts DCMTK storescp as DEST, then times, `--repeat` times each and alternating:

- movescu -S at STUDY level (minipacs sends the N C-STOREs to storescp), and
- storescu of the same N source files to the same storescp.

Every DCMTK tool runs with TCP_NODELAY=1. Prints the median rates in instances/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TCP_NODELAY": "1"}
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll a TCP connect until the listener accepts."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"listener on {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.02)
    raise SystemExit(f"nothing listens on port {port}")


def make_study(folder: Path, count: int, rows: int, columns: int) -> str:
    """Write `count` CT instances of one study (4 series); returns the Study Instance UID."""
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid()
    series_uids = [generate_uid() for _ in range(4)]
    random = numpy.random.default_rng(4)
    for number in range(count):
        ds = Dataset()
        ds.SOPClassUID = CT_IMAGE_STORAGE
        ds.SOPInstanceUID = generate_uid()
        ds.PatientName, ds.PatientID = "Rate^Measure", "RATE1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uids[number % 4]
        ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20240102", "1015", "R1", "1"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", number % 4 + 1, number + 1
        ds.Rows, ds.Columns, ds.SamplesPerPixel = rows, columns, 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelData = random.integers(0, 4096, rows * columns, dtype="<u2").tobytes()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.save_as(folder / f"{number:05d}.dcm", enforce_file_format=True)
    return study_uid


def timed(command: list[str]) -> float:
    """Run a command to completion; its wall-clock seconds. Exits on failure."""
    started = time.monotonic()
    result = subprocess.run(command, env=ENV, capture_output=True, text=True)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"{command[0]} failed ({result.returncode}):\n{result.stdout}"
                         f"\n{result.stderr}")
    return elapsed


def received(folder: Path) -> int:
    """How many files storescp wrote; the folder is emptied for the next run."""
    files = [p for p in folder.iterdir() if p.is_file()]
    for path in files:
        path.unlink()
    return len(files)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--columns", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--pdu", type=int, default=131072,
                        help="storescp's maximum PDU (DCMTK allows up to 131072)")
    parser.add_argument("--folder", type=Path, help="work folder (default: a temp folder)")
    arguments = parser.parse_args()
    for tool in ("movescu", "storescu", "storescp"):
        if shutil.which(tool) is None:
            raise SystemExit(f"DCMTK's {tool} is not installed")

    work = arguments.folder or Path(tempfile.mkdtemp(prefix="minipacs-rate-"))
    source, output = work / "source", work / "received"
    output.mkdir(parents=True, exist_ok=True)
    print(f"work folder {work}", flush=True)
    study_uid = make_study(source, arguments.instances, arguments.rows, arguments.columns)
    size = sum(p.stat().st_size for p in source.iterdir()) / arguments.instances
    config = work / "empty.toml"
    config.write_text("")
    settings = ["--config", str(config), "--storage", str(work / "archive"),
                "--database", f"sqlite:///{work}/index.sqlite", "--log-level", "WARNING"]
    staged = work / "staged"
    shutil.copytree(source, staged)  # `pacs import` moves files on the archive's disk
    subprocess.run([sys.executable, "-m", "pacs", "import", *settings, str(staged)],
                   cwd=REPO, check=True, env=ENV, stdout=subprocess.DEVNULL)

    dest_port = free_port()
    storescp = subprocess.Popen(
        ["storescp", "-aet", "DEST", "-pdu", str(arguments.pdu), "-od", str(output),
         str(dest_port)], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ready = work / "ready"
    server = subprocess.Popen(
        [sys.executable, "-m", "pacs", "serve", *settings, "--host", "127.0.0.1",
         "--port", "0", "--remote", f"DEST@127.0.0.1:{dest_port}", "--ready-file", str(ready)],
        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(dest_port, storescp)
        deadline = time.monotonic() + 30
        while not (ready.exists() and ready.read_text().strip()):
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("pacs serve did not start")
            time.sleep(0.05)
        port = ready.read_text().split()[1]
        move = ["movescu", "-aet", "MOVESCU", "-aec", "MINIPACS", "-aem", "DEST", "-S",
                "-k", "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study_uid}",
                "127.0.0.1", port]
        store = ["storescu", "-aet", "STORESCU", "-aec", "DEST", "+sd", "127.0.0.1",
                 str(dest_port), str(source)]
        move_times, store_times = [], []
        for _ in range(arguments.repeat):
            move_times.append(timed(move))
            assert received(output) == arguments.instances, "movescu: not every instance"
            store_times.append(timed(store))
            assert received(output) == arguments.instances, "storescu: not every instance"
    finally:
        server.terminate()
        storescp.terminate()
        server.wait(timeout=30)
        storescp.wait(timeout=30)

    n = arguments.instances
    move_rate = n / statistics.median(move_times)
    store_rate = n / statistics.median(store_times)
    print(f"{n} instances of {size / 1024:.0f} KiB ({arguments.rows}x{arguments.columns} CT, "
          f"Explicit VR LE), storescp -pdu {arguments.pdu}, TCP_NODELAY=1, median of "
          f"{arguments.repeat}")
    print(f"  minipacs C-MOVE (movescu -S STUDY) -> storescp: {move_rate:7.1f} instances/s  "
          f"runs {', '.join(f'{t:.2f}' for t in move_times)} s")
    print(f"  DCMTK storescu -> storescp (same files):        {store_rate:7.1f} instances/s  "
          f"runs {', '.join(f'{t:.2f}' for t in store_times)} s")
    print(f"  ratio {move_rate / store_rate:.2f}")
    if arguments.folder is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
