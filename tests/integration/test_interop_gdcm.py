"""GDCM's gdcmscu (Debian's libgdcm-tools) against minipacs, on each index backend: C-ECHO,
C-STORE and C-FIND response counts at three levels.

gdcmscu 3.0.21 aborts by itself once the association is released ("ProtocolStream as nullptr
is invalid", SIGABRT) and loses what it would have printed after that. So each run is read
from its debug trace: the responses minipacs sent (command field and status of each received
P-DATA PDU) and that our A-RELEASE-RP arrived before the abort.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from pacs.dimse.server import RunningServer
from tests.factory import make_file
from tests.integration.interop_support import populate, require_program

C_STORE_RSP, C_FIND_RSP, C_ECHO_RSP = 0x8001, 0x8020, 0x8030
_COMMAND = re.compile(r"\(0000,0100\) \?\? \(US\) (\d+)")
_STATUS = re.compile(r"\(0000,0900\) \?\? \(US\) (\d+)")
_OWN_ABORT = "ProtocolStream as nullptr is invalid"


@dataclass(frozen=True)
class GdcmRun:
    """What one gdcmscu run received: (command field, status) per response, and whether our
    A-RELEASE-RP (PDU type 6) arrived."""

    responses: list[tuple[int, int]]
    released: bool
    output: str

    def statuses(self, command: int) -> list[int]:
        """The statuses of the responses with this command field, in order."""
        return [status for field, status in self.responses if field == command]


def gdcmscu(server: RunningServer, *arguments: str) -> GdcmRun:
    """Run `gdcmscu -D ARGUMENTS --call MINIPACS HOST PORT`; fail on anything but success
    or gdcmscu's own abort after a completed release."""
    host, port = server.address
    result = subprocess.run(
        [require_program("gdcmscu", "libgdcm-tools"), "-D", *arguments, "--aetitle", "GDCM",
         "--call", "MINIPACS", host, str(port)],
        capture_output=True, text=True, errors="replace", timeout=120,
        # gdcmscu picks the request's Specific Character Set from the locale.
        env={**os.environ, "LC_ALL": "C.UTF-8"})
    output = result.stdout + result.stderr
    responses = []
    for block in output.split("Received ItemType #4")[1:]:
        block = block.split("Received ItemType")[0]
        command, status = _COMMAND.search(block), _STATUS.search(block)
        if command and status:
            responses.append((int(command[1]), int(status[1])))
    run = GdcmRun(responses, "Received ItemType #6" in output, output)
    assert run.released, output[-3000:]
    assert result.returncode == 0 or (result.returncode == -signal.SIGABRT
                                      and _OWN_ABORT in output), output[-3000:]
    return run


# PS3.7 9.1.5: gdcmscu --echo gets one C-ECHO response, Success.
def test_gdcmscu_echo_succeeds(server: RunningServer) -> None:
    assert gdcmscu(server, "--echo").statuses(C_ECHO_RSP) == [0x0000]


# PS3.4 B.2.3: gdcmscu --store of a folder: each file answered Success and stored as sent.
def test_gdcmscu_store_is_stored(server: RunningServer, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    files = [make_file(folder, patient_id="GDCM-STORE", instance=n) for n in (1, 2, 3)]
    run = gdcmscu(server, "--store", "-r", "-i", str(folder))
    assert run.statuses(C_STORE_RSP) == [0x0000] * len(files)
    for path in files:
        sent = pydicom.dcmread(path)
        record = server.services.index.get_instance(sent.SOPInstanceUID)
        assert record is not None
        assert pydicom.dcmread(server.services.archive.absolute(record.file_path)) == sent


# PS3.4 C.4.1: Study Root C-FIND at each level answers one Pending response per matching
# entity, then Success: the study by a name outside Latin-1 with a wildcard (C.2.2.2.4),
# the series of the study, the images of one series.
@pytest.mark.parametrize(("level", "expected"), [("study", 1), ("series", 2), ("image", 3)])
def test_gdcmscu_find_counts(server: RunningServer, tmp_path: Path, level: str,
                             expected: int) -> None:
    archive = populate(server.services, tmp_path / "in")
    populate(server.services, tmp_path / "other", patient_id="GDCM-2",
             patient_name="Kowalski^Jan")
    keys = {
        "study": ["10,10=Łukasiewicz*", "20,d="],
        "series": [f"20,d={archive.study}", "20,e=", "8,60="],
        "image": [f"20,d={archive.study}", f"20,e={archive.series_uid(0)}", "8,18="],
    }[level]
    run = gdcmscu(server, "--find", "--studyroot", f"--{level}",
                  *(part for key in keys for part in ("--key", key)))
    assert run.statuses(C_FIND_RSP) == [0xFF00] * expected + [0x0000]
