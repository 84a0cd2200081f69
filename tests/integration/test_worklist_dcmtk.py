"""Modality Worklist with DCMTK: `findscu -W` with keys in the style of DCMTK's wlistqry examples,
answered by minipacs and by DCMTK's own `wlmscpfs` serving the same files; the answers agree.

Both read one folder of `.wl` files (wlmscpfs from <folder>/<called AE>/, with its lockfile).
Where the two differ (minipacs matches person names case-insensitively by default; wlmscpfs
takes a date range and a time range together as one period, and matches Scheduled Station AE
Title without wildcards, which PS3.4 C.2.2.2.4 allows for AE), the queries here stay on common
ground; README "Modality Worklist" says what differs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset

from pacs.dimse.server import RunningServer
from tests.dcmtk import dcmtk_env, require_tool, run_tool
from tests.integration.modality_support import worklist_item, write_item
from tests.integration.move_support import wait_for_port
from tests.postgres import free_port

CALLED = "MINIWL"
SPS = "ScheduledProcedureStepSequence"
# (accession, patient, id, modality, station(s), date, time, physician)
ROWS = [
    ("00001", "VIVALDI^ANTONIO", "AV35674", "MR", "AA32\\AA33", "19951015", "085607", "JOHNSON"),
    ("00002", "MOZART^WOLFGANG", "AM12345", "CT", "AA2", "19951015", "121500", "SMITH"),
    ("00003", "BACH^JOHANN", "JB77", "MR", "AA2", "19951016", "073000", ""),
    ("00004", "HAYDN^JOSEPH", "JH8", "US", "AA4", "19951017", "160000", "JOHNSON^ANN"),
    ("00005", "VIVALDI^ANTONIO", "AV35674", "CT", "AA1", "19951018", "120000", "WATSON"),
]
RETURN_KEYS = ["AccessionNumber", "PatientName", "PatientID", "PatientBirthDate",
               "PatientSex", "StudyInstanceUID", "RequestedProcedureID",
               "RequestedProcedureDescription", "ReferringPhysicianName"]
STEP_KEYS = ["Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
             "ScheduledProcedureStepStartTime", "ScheduledPerformingPhysicianName",
             "ScheduledProcedureStepDescription", "ScheduledProcedureStepID",
             "ScheduledStationName"]


@pytest.fixture(scope="module")
def wlmscpfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """The worklist folder (<root>/MINIWL/*.wl) and the port of wlmscpfs serving it."""
    root = tmp_path_factory.mktemp("wlistdb")
    folder = root / CALLED
    folder.mkdir()
    (folder / "lockfile").write_text("")
    for accession, name, patient, modality, station, date, time, physician in ROWS:
        item = worklist_item(accession, name, patient, modality, station, date, time,
                             physician, SpecificCharacterSet=None)
        write_item(item, folder / f"wklist{accession}.wl")
    port = free_port()
    process = subprocess.Popen(
        [require_tool("wlmscpfs"), "-dfp", str(root), "--single-process", str(port)],
        env=dcmtk_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, process)
        yield folder, port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def both(wlmscpfs: tuple[Path, int],
         server_factory: Callable[..., RunningServer]) -> tuple[int, int]:
    """(minipacs port, wlmscpfs port), serving the same worklist files."""
    folder, dcmtk_port = wlmscpfs
    server = server_factory(worklist_folder=folder, ae_title=CALLED)
    return server.address[1], dcmtk_port


def findscu(port: int, keys: list[str], out: Path) -> list[Dataset]:
    """`findscu -W` with `-k` keys; the responses it extracted (rsp*.dcm)."""
    out.mkdir(parents=True)
    arguments = ["-W", "-aet", "MODALITY", "-aec", CALLED, "-X", "-od", str(out)]
    for key in keys:
        arguments += ["-k", key]
    run_tool("findscu", [*arguments, "127.0.0.1", str(port)], check=True)
    return [dcmread(path) for path in sorted(out.glob("rsp*.dcm"))]


def keys_of(step: dict[str, str] | None = None, **top: str) -> list[str]:
    """The usual return keys (zero length) with `top` and `step` values, as findscu -k."""
    keys = [f"{k}={top.get(k, '')}" for k in RETURN_KEYS]
    keys += [f"{k}={v}" for k, v in top.items() if k not in RETURN_KEYS]
    values = step or {}
    keys += [f"{SPS}[0].{k}={values.get(k, '')}" for k in STEP_KEYS]
    return keys


def normalized(responses: list[Dataset]) -> list[tuple[tuple[str, str], ...]]:
    """Each response as (keyword, value) pairs of the requested keys, sorted."""
    rows = []
    for response in responses:
        pairs = [(k, str(response.get(k, "") or "")) for k in RETURN_KEYS]
        steps = response.get(SPS) or [Dataset()]
        pairs += [(f"{SPS}.{k}", str(steps[0].get(k, "") or "")) for k in STEP_KEYS]
        rows.append(tuple(pairs))
    return sorted(rows)


def compare(both: tuple[int, int], tmp_path: Path, keys: list[str]) -> int:
    """Run the query against both; assert the answers agree; return how many matched."""
    ours = normalized(findscu(both[0], keys, tmp_path / "minipacs"))
    theirs = normalized(findscu(both[1], keys, tmp_path / "wlmscpfs"))
    assert ours == theirs
    return len(ours)


# PS3.4 K.2.2.1.2: zero-length keys return every item (DCMTK wlistqry11).
def test_every_item(both: tuple[int, int], tmp_path: Path) -> None:
    assert compare(both, tmp_path, keys_of()) == len(ROWS)


# PS3.4 Table K.6-1: >Modality (DCMTK wlistqry4 asks for "DD").
@pytest.mark.parametrize("modality", ["MR", "CT", "DD"])
def test_modality(both: tuple[int, int], tmp_path: Path, modality: str) -> None:
    compare(both, tmp_path, keys_of({"Modality": modality}))


# PS3.4 Table K.6-1: >Scheduled Station AE Title, multi-valued in the items (wlistqry6).
@pytest.mark.parametrize("station", ["AA2", "AA33", "AA1"])
def test_station(both: tuple[int, int], tmp_path: Path, station: str) -> None:
    compare(both, tmp_path, keys_of({"ScheduledStationAETitle": station}))


# PS3.4 C.2.2.2.5: start date single value and ranges.
@pytest.mark.parametrize("date", ["19951015", "19951016-19951017", "19951017-", "-19951015"])
def test_start_date(both: tuple[int, int], tmp_path: Path, date: str) -> None:
    compare(both, tmp_path, keys_of({"ScheduledProcedureStepStartDate": date}))


# PS3.4 C.2.2.2.5: a start time range alone (wlistqry5: "120000-").
@pytest.mark.parametrize("time", ["120000-", "-085607", "080000-130000"])
def test_start_time(both: tuple[int, int], tmp_path: Path, time: str) -> None:
    compare(both, tmp_path, keys_of({"ScheduledProcedureStepStartTime": time}))


# A start date and a start time range together.
def test_start_date_and_time_range(both: tuple[int, int], tmp_path: Path) -> None:
    compare(both, tmp_path, keys_of({"ScheduledProcedureStepStartDate": "19951015",
                                     "ScheduledProcedureStepStartTime": "120000-"}))


# PS3.4 Table K.6-1: Patient's Name (wildcards) and Patient ID.
@pytest.mark.parametrize("top", [{"PatientName": "VIVALDI^ANTONIO"}, {"PatientName": "M*"},
                                 {"PatientName": "?ACH*"}, {"PatientID": "AV35674"},
                                 {"AccessionNumber": "00004"}])
def test_patient_and_accession(both: tuple[int, int], tmp_path: Path,
                               top: dict[str, str]) -> None:
    compare(both, tmp_path, keys_of(**top))


# PS3.4 K.2.2.1.1.1: BACH's physician is zero length and fails to match "J*"; "*" matches.
@pytest.mark.parametrize("physician", ["J*", "JOHNSON", "*"])
def test_performing_physician(both: tuple[int, int], tmp_path: Path, physician: str) -> None:
    count = compare(both, tmp_path, keys_of({"ScheduledPerformingPhysicianName": physician}))
    assert count == {"J*": 2, "JOHNSON": 1, "*": 5}[physician]
