#!/usr/bin/env python3
"""Measure how `pacs serve` copes with probes, garbage and a destination slow to release.

    .venv/bin/python scripts/measure_probes.py [--probes 1000] [--garbage 50] [--hold 10]

Starts `pacs serve` as its own process (default timeouts: ACSE 30 s, network 60 s) on an
archive of 5 small instances, then measures, over loopback:

- connect-and-close probes (health checks): their total time, and how long a C-ECHO (DCMTK
  echoscu) takes right after them;
- connections sending an HTTP request: how long until the server closes each, and how many
  log lines they cost;
- a C-MOVE (DCMTK movescu) of the 5 instances to a pynetdicom Storage SCP that holds its
  A-RELEASE-RP for `--hold` seconds: the movescu wall time;
- SIGTERM after all that: how long until the process has exited.
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

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pynetdicom import AE, AllStoragePresentationContexts, evt
from pynetdicom.pdu_primitives import A_RELEASE

REPO = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "TCP_NODELAY": "1"}
HTTP_REQUEST = b"GET / HTTP/1.1\r\nHost: pacs\r\nUser-Agent: probe/1.00\r\nAccept: */*\r\n\r\n"


def write_study(folder: Path, count: int) -> str:
    """`count` 8x8 CT instances of one study; returns its Study Instance UID."""
    study, series = generate_uid(), generate_uid()
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        dataset = Dataset()
        dataset.file_meta = FileMetaDataset()
        dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = \
            "1.2.840.10008.5.1.4.1.1.2"
        dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = generate_uid()
        dataset.PatientID, dataset.PatientName, dataset.Modality = "PROBE", "PROBE^TEST", "CT"
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID = study, series
        dataset.InstanceNumber = number
        dataset.Rows = dataset.Columns = 8
        dataset.BitsAllocated = dataset.BitsStored = 16
        dataset.HighBit, dataset.PixelRepresentation, dataset.SamplesPerPixel = 15, 0, 1
        dataset.PhotometricInterpretation = "MONOCHROME2"
        dataset.PixelData = bytes(128)
        dataset.save_as(folder / f"{number}.dcm", enforce_file_format=True)
    return str(study)


def slow_releaser(hold: float) -> tuple[AE, int]:
    """A Storage SCP that holds each A-RELEASE-RP for `hold` seconds; its AE and port."""
    def on_acse_sent(event: evt.Event) -> None:
        if isinstance(event.primitive, A_RELEASE) and event.primitive.result is not None:
            time.sleep(hold)

    ae = AE(ae_title="DEST")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ExplicitVRLittleEndian)
    server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[
        (evt.EVT_C_STORE, lambda event: 0x0000), (evt.EVT_ACSE_SENT, on_acse_sent)])
    assert server is not None
    return ae, int(server.server_address[1])


def _outcome(result: subprocess.CompletedProcess[str], seconds: float) -> str:
    """'0.12 s', or why the DCMTK tool failed."""
    if result.returncode == 0:
        return f"{seconds:.2f} s"
    reasons = [line for line in (result.stdout + result.stderr).splitlines()
               if line.startswith(("E:", "F:"))]
    return f"failed after {seconds:.2f} s ({'; '.join(reasons[-2:])})"


def until_closed(connection: socket.socket, limit: float = 60) -> float | None:
    """Seconds until the server closes `connection` (reading and dropping what it sends);
    None when it is still open after `limit` seconds."""
    started = time.monotonic()
    connection.settimeout(limit)
    try:
        while connection.recv(65536):
            pass
    except ConnectionResetError:
        pass
    except TimeoutError:
        return None
    finally:
        connection.close()
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=1000)
    parser.add_argument("--garbage", type=int, default=50)
    parser.add_argument("--hold", type=float, default=10.0)
    parser.add_argument("--no-move", action="store_true", help="skip the C-MOVE")
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="measure-probes-"))
    study = write_study(folder / "in", 5)
    python = sys.executable
    common = ["--storage", str(folder / "archive"), "--database",
              f"sqlite:///{folder}/index.sqlite"]
    subprocess.run([python, "-m", "pacs", "import", *common, str(folder / "in")], check=True,
                   cwd=REPO, capture_output=True)
    destination, destination_port = slow_releaser(arguments.hold)
    ready, log = folder / "ready", folder / "server.log"
    with open(log, "wb") as output:
        server = subprocess.Popen(
            [python, "-m", "pacs", "serve", "--host", "127.0.0.1", "--port", "0", *common,
             "--ready-file", str(ready), "--remote", f"DEST@127.0.0.1:{destination_port}"],
            cwd=REPO, stdout=output, stderr=output)
    try:
        while not ready.exists() or not ready.read_text().strip():
            time.sleep(0.05)
        port = int(ready.read_text().split()[1])
        address = ("127.0.0.1", port)

        started = time.monotonic()
        for _ in range(arguments.probes):
            socket.create_connection(address, timeout=30).close()
        probes = time.monotonic() - started
        started = time.monotonic()
        echo_result = subprocess.run(["echoscu", "-aec", "MINIPACS", *map(str, address)],
                                     env=ENV, capture_output=True, text=True)
        echo = _outcome(echo_result, time.monotonic() - started)

        lines_before = log.read_text().count("\n")
        closes = []
        for _ in range(arguments.garbage):
            connection = socket.create_connection(address, timeout=30)
            connection.sendall(HTTP_REQUEST)
            closes.append(until_closed(connection))
        time.sleep(0.5)  # the last connection's log line is written as its thread ends
        garbage_lines = log.read_text().count("\n") - lines_before

        started = time.monotonic()
        move_result = None if arguments.no_move else subprocess.run(
            ["movescu", "-S", "-aet", "MOVESCU", "-aec", "MINIPACS", "-aem", "DEST", "-k",
             "QueryRetrieveLevel=STUDY", "-k", f"StudyInstanceUID={study}", *map(str, address)],
            env=ENV, capture_output=True, text=True)
        move = "not measured" if move_result is None else _outcome(
            move_result, time.monotonic() - started)

        started = time.monotonic()
        server.terminate()
        server.wait(timeout=120)
        stop = time.monotonic() - started
    finally:
        if server.poll() is None:
            server.kill()
        destination.shutdown()
        shutil.rmtree(folder, ignore_errors=True)
    print(f"| {arguments.probes} connect-and-close probes | {probes:.2f} s |")
    print(f"| C-ECHO right after them | {echo} |")
    closed = [seconds for seconds in closes if seconds is not None]
    open_ones = f", {len(closes) - len(closed)} still open after 60 s" if len(closed) < len(
        closes) else ""
    times = (f"{statistics.median(closed) * 1000:.1f} ms / {max(closed) * 1000:.1f} ms"
             if closed else "not measured")
    print(f"| HTTP request on the DICOM port: closed after (median / max of "
          f"{arguments.garbage}{open_ones}) | {times} |")
    print(f"| log lines for those {arguments.garbage} connections | {garbage_lines} |")
    print(f"| C-MOVE of 5 to a destination holding A-RELEASE-RP {arguments.hold:g} s "
          f"| {move} |")
    print(f"| SIGTERM to exit | {stop:.2f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
