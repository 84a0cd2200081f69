"""Debian's odil against minipacs, on each index backend: the `odil` command (echo, store,
find, get of a series and of a study) and its Python bindings, python3-odil, for C-MOVE
(to a DCMTK storescp: see odil_move.py for why not to odil's own incoming port)."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from pacs.config import RemoteAE
from pacs.dimse.server import RunningServer
from tests.factory import make_file
from tests.integration.interop_support import (
    populate,
    require_program,
    require_python_module,
)
from tests.integration.move_support import StoreSCP, stored_data_set

ODIL_AE = "ODIL"
DESTINATION_AE = "ODILDEST"
MOVE_SCRIPT = Path(__file__).with_name("odil_move.py")


def _odil(server: RunningServer, command: str, *arguments: str,
          directory: Path | None = None) -> str:
    """Run `odil COMMAND [-d DIRECTORY] HOST PORT ODIL MINIPACS ARGUMENTS...`; its output.
    Fails the test when odil exits non-zero."""
    host, port = server.address
    options = ["-d", str(directory)] if directory is not None else []
    result = subprocess.run(
        [require_program("odil", "odil"), command, *options, host, str(port), ODIL_AE,
         "MINIPACS", *arguments], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


@pytest.fixture
def destination(storescp: Callable[..., StoreSCP]) -> StoreSCP:
    """DCMTK storescp as the destination of python3-odil's C-MOVEs."""
    return storescp(ae_title=DESTINATION_AE)


@pytest.fixture
def odil_server(server_factory: Callable[..., RunningServer],
                destination: StoreSCP) -> RunningServer:
    """A server that knows the storescp destination."""
    return server_factory(remotes=(RemoteAE(DESTINATION_AE, "127.0.0.1", destination.port),))


# PS3.7 9.1.5: `odil echo` succeeds.
def test_odil_echo_succeeds(odil_server: RunningServer) -> None:
    _odil(odil_server, "echo")


# PS3.4 B.2.3: files sent with `odil store` are stored, each as the data set sent.
def test_odil_store_is_stored(odil_server: RunningServer, tmp_path: Path) -> None:
    files = [make_file(tmp_path / "in", patient_id="ODIL-STORE", instance=n,
                       patient_name="Łukasiewicz^Jan") for n in (1, 2)]
    _odil(odil_server, "store", *map(str, files))
    for path in files:
        sent = pydicom.dcmread(path)
        record = odil_server.services.index.get_instance(sent.SOPInstanceUID)
        assert record is not None
        assert pydicom.dcmread(odil_server.services.archive.absolute(record.file_path)) == sent


def _answers(output: str) -> int:
    match = re.search(r"^(\d+) answers?$", output, re.MULTILINE)
    assert match, output
    return int(match[1])


# PS3.4 C.4.1, C.2.2.2.4: a Study Root study-level `odil find` with a wildcard on a name
# outside Latin-1 finds the one study; the answer carries the name and the instance count.
def test_odil_find_study_by_utf8_name(odil_server: RunningServer, tmp_path: Path) -> None:
    archive = populate(odil_server.services, tmp_path / "in")
    populate(odil_server.services, tmp_path / "other", patient_id="ODIL-2",
             patient_name="Kowalski^Jan")
    # odil sends values as typed: the request names their character set (PS3.3 C.12.1.1.2).
    output = _odil(odil_server, "find", "study", "QueryRetrieveLevel=STUDY",
                   "SpecificCharacterSet=ISO_IR 192", "PatientName=Łukasiewicz*",
                   "StudyInstanceUID",
                   "NumberOfStudyRelatedInstances")
    assert _answers(output) == 1
    assert f"['{archive.patient_name}']" in output
    assert f"['{archive.study}']" in output and "[5]" in output


# PS3.4 C.4.1: a series-level `odil find` of one study answers one response per series.
def test_odil_find_series_of_a_study(odil_server: RunningServer, tmp_path: Path) -> None:
    archive = populate(odil_server.services, tmp_path / "in")
    output = _odil(odil_server, "find", "study", "QueryRetrieveLevel=SERIES",
                   f"StudyInstanceUID={archive.study}", "SeriesInstanceUID", "Modality")
    assert _answers(output) == 2
    assert all(f"['{series}']" in output for series in archive.series)


def _got(folder: Path) -> set[str]:
    return {str(pydicom.dcmread(path).SOPInstanceUID) for path in folder.iterdir()}


def _counts(output: str) -> tuple[int, int]:
    match = re.search(r"Completed: (\d+), remaining: \d+, failed: (\d+)", output)
    assert match, output
    return int(match[1]), int(match[2])


# PS3.4 C.4.3: `odil get` of a study receives every instance of the study over its own
# association. (odil first asks SOP Classes in Study with a study-level C-FIND.)
def test_odil_get_of_a_study(odil_server: RunningServer, tmp_path: Path) -> None:
    archive = populate(odil_server.services, tmp_path / "in")
    folder = tmp_path / "got"
    output = _odil(odil_server, "get", "study", "QueryRetrieveLevel=STUDY",
                   f"StudyInstanceUID={archive.study}", directory=folder)
    assert _counts(output) == (len(archive.instances), 0)
    assert _got(folder) == archive.instances


# PS3.4 C.4.3: `odil get` of one series receives exactly that series. (odil's study-level
# C-FIND for SOP Classes in Study also carries the Series Instance UID, a key below the
# level: minipacs must answer it rather than refuse it.)
def test_odil_get_of_a_series(odil_server: RunningServer, tmp_path: Path) -> None:
    archive = populate(odil_server.services, tmp_path / "in")
    folder = tmp_path / "got"
    series = archive.series_uid(1)
    output = _odil(odil_server, "get", "study", "QueryRetrieveLevel=SERIES",
                   f"StudyInstanceUID={archive.study}", f"SeriesInstanceUID={series}",
                   directory=folder)
    assert _counts(output) == (len(archive.series[series]), 0)
    assert _got(folder) == archive.series[series]


def _odil_move(server: RunningServer, level: str, **keys: str) -> list[int]:
    """C-MOVE with python3-odil to the storescp destination; the statuses it received."""
    python = require_python_module("odil", "python3-odil")
    host, port = server.address
    result = subprocess.run(
        [python, str(MOVE_SCRIPT), host, str(port), "MINIPACS", ODIL_AE, DESTINATION_AE,
         level, *(f"{k}={v}" for k, v in keys.items())],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    return [int(s) for s in json.loads(result.stdout.strip().splitlines()[-1])["statuses"]]


# PS3.4 C.4.2: a C-MOVE of a study from python3-odil delivers the study, as stored, to the
# Move Destination; the final status is Success.
def test_python_odil_move_of_a_study(odil_server: RunningServer, destination: StoreSCP,
                                     tmp_path: Path) -> None:
    archive = populate(odil_server.services, tmp_path / "in")
    statuses = _odil_move(odil_server, "STUDY", StudyInstanceUID=archive.study)
    assert statuses[-1] == 0x0000
    received = destination.received()
    assert set(received) == archive.instances
    for sop_instance_uid, data_set in received.items():
        assert data_set == stored_data_set(odil_server.services, sop_instance_uid)


# PS3.4 C.4.2: a series-level C-MOVE from python3-odil delivers exactly that series.
def test_python_odil_move_of_a_series(odil_server: RunningServer, destination: StoreSCP,
                                      tmp_path: Path) -> None:
    archive = populate(odil_server.services, tmp_path / "in")
    series = archive.series_uid(0)
    statuses = _odil_move(odil_server, "SERIES", StudyInstanceUID=archive.study,
                          SeriesInstanceUID=series)
    assert statuses[-1] == 0x0000
    assert set(destination.received()) == archive.series[series]
