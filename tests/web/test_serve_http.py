"""`pacs serve` serving DICOMweb next to DIMSE, as a process: one server, `--workers`, SIGTERM,
and memory that does not grow with what is stored or retrieved (PS3.18 10.4, 10.5 streamed).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.factory import make_dataset


def http_port(process: ServerProcess) -> int:
    """The HTTP port a `pacs serve --http-port auto` reported in its ready file."""
    words = (process.folder / "ready").read_text().split()
    return int(next(word for word in words if word.startswith("http="))[5:])


def kib(pid: int, field: str) -> int:
    """VmHWM / VmRSS of a process, in KiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def encoded_instances(count: int, rows: int) -> Iterator[bytes]:
    for number in range(1, count + 1):
        dataset = make_dataset(patient_id="P-BIG", study="BIG", instance=number, rows=rows,
                               columns=rows)
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        yield buffer.getvalue()


def stow_body(count: int, rows: int, boundary: str) -> Iterator[bytes]:
    for encoded in encoded_instances(count, rows):
        yield f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        yield encoded
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode()


# `pacs serve` answers DICOMweb on its HTTP port, and stops cleanly on SIGTERM.
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_answers_dicomweb(server_process: Callable[..., ServerProcess],
                                workers: int) -> None:
    process = server_process("--http-port", "auto", "--workers", str(workers))
    root = f"http://127.0.0.1:{http_port(process)}/dicom-web"
    boundary = "b0undary"
    response = httpx.post(f"{root}/studies", content=b"".join(stow_body(2, 8, boundary)),
                          headers={"Content-Type": "multipart/related; "
                                   f'type="application/dicom"; boundary={boundary}'},
                          timeout=60)
    assert response.status_code == 200, response.text
    for _ in range(4):  # new connections: with workers, more than one answers
        assert len(httpx.get(f"{root}/instances", timeout=30).json()) == 2
    assert process.terminate() == 0


# Memory does not grow with the size of what is sent or received: a ~200 MB study goes in by
# STOW-RS (one chunked request) and out by WADO-RS with the server's peak RSS bounded.
def test_memory_does_not_grow_with_the_study(server_process: Callable[..., ServerProcess]
                                             ) -> None:
    process = server_process("--http-port", "auto")
    assert process.process is not None
    pid = process.process.pid
    root = f"http://127.0.0.1:{http_port(process)}/dicom-web"
    httpx.get(f"{root}/studies", timeout=30)  # every module of the HTTP face is imported
    baseline = kib(pid, "VmRSS")
    count, rows = 100, 1024  # 100 instances of 2 MiB of pixels: ~210 MB
    boundary = "big-boundary"
    response = httpx.post(f"{root}/studies", content=stow_body(count, rows, boundary),
                          headers={"Content-Type": "multipart/related; "
                                   f'type="application/dicom"; boundary={boundary}'},
                          timeout=600)
    assert response.status_code == 200
    study = make_dataset(patient_id="P-BIG", study="BIG").StudyInstanceUID
    received = 0
    with httpx.stream("GET", f"{root}/studies/{study}", timeout=600, headers={
            "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'}) as got:
        assert got.status_code == 200
        for chunk in got.iter_bytes():
            received += len(chunk)
    assert received > count * rows * rows * 2
    growth_mb = (kib(pid, "VmHWM") - baseline) / 1024
    print(f"\nserver RSS before {baseline / 1024:.1f} MB, peak growth {growth_mb:.1f} MB "
          f"for {received / 1e6:.0f} MB each way")
    assert growth_mb < 64, f"peak RSS grew {growth_mb:.0f} MB for a {received / 1e6:.0f} MB study"
