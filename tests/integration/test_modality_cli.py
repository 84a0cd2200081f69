"""`pacs worklist add|list|remove` and `pacs mpps list|show` as an operator runs them, on both
backends, against the index a running server uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydicom.dataset import Dataset

from pacs.dimse.server import RunningServer
from tests.conftest import REPO
from tests.factory import CT_IMAGE_STORAGE, make_file, uid
from tests.integration.modality_support import (
    MPPS,
    associated,
    completion,
    mpps_attributes,
    performed_series,
    worklist_item,
    write_item,
)


def _pacs(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pacs", *arguments], capture_output=True,
                          text=True, timeout=120, cwd=REPO, stdin=subprocess.DEVNULL)


@pytest.fixture
def common(server: RunningServer, tmp_path: Path) -> list[str]:
    """The flags that point a command at the running server's archive and index."""
    config = tmp_path / "empty.toml"
    config.write_text("")
    settings = server.services.settings
    return ["--config", str(config), "--storage", str(settings.storage),
            "--database", settings.database]


def test_worklist_add_list_remove(common: list[str], tmp_path: Path) -> None:
    # README "Modality Worklist": items kept in the index; Type 1 return keys of PS3.4
    # Table K.6-1 required; adding again replaces; remove by id.
    good = [write_item(worklist_item(f"W{n}"), tmp_path / f"W{n}.wl") for n in (1, 2)]
    bad = worklist_item("W3")
    del bad.ScheduledProcedureStepSequence[0].ScheduledStationAETitle
    broken = write_item(bad, tmp_path / "W3.wl")
    added = _pacs("worklist", "add", *common, *map(str, good), str(broken))
    assert added.returncode == 1  # one file was rejected
    assert "added: 2" in added.stdout and "rejected: 1" in added.stdout
    assert "W3.wl: Scheduled Procedure Step has no ScheduledStationAETitle" in added.stdout
    again = _pacs("worklist", "add", *common, str(good[0]))
    assert "replaced: 1" in again.stdout and again.returncode == 0

    listed = _pacs("worklist", "list", *common, "--json")
    items = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [Dataset.from_json(i["dataset"]).AccessionNumber for i in items] == ["W1", "W2"]
    assert {i["state"] for i in items} == {"SCHEDULED"}

    removed = _pacs("worklist", "remove", *common, str(items[0]["id"]), "999999")
    assert removed.returncode == 1 and "999999: not removed: no such item" in removed.stderr
    assert "removed: 1" in removed.stdout
    text = _pacs("worklist", "list", *common).stdout
    assert "W2" in text and "W1" not in text and "source=pacs worklist add" in text


def test_worklist_list_reads_the_folder_and_keeps_its_items(common: list[str],
                                                            tmp_path: Path) -> None:
    # README "Modality Worklist": folder items follow their files, they are not removed here.
    folder = tmp_path / "worklist"
    folder.mkdir()
    write_item(worklist_item("F1"), folder / "F1.wl")
    listed = _pacs("worklist", "list", *common, "--worklist-folder", str(folder), "--json")
    (item,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert item["source"] == "F1.wl"
    refused = _pacs("worklist", "remove", *common, str(item["id"]))
    assert refused.returncode == 1 and "delete the file" in refused.stderr


def test_mpps_list_and_show(server: RunningServer, common: list[str], tmp_path: Path) -> None:
    # README "MPPS": the steps without C-FIND; listed instances held (stored) or not yet.
    held = server.services.ingestor.store(make_file(tmp_path / "in", patient_id="P1"))
    missing = uid("mpps-cli", "not yet sent")
    step = uid("mpps-cli", "step")
    with associated(server, MPPS) as assoc:
        assert assoc.send_n_create(mpps_attributes(), MPPS, step)[0].Status == 0
        final = completion("COMPLETED", performed_series(
            held.series_instance_uid, (CT_IMAGE_STORAGE, held.sop_instance_uid),
            (CT_IMAGE_STORAGE, missing)))
        assert assoc.send_n_set(final, MPPS, step)[0].Status == 0
    listed = _pacs("mpps", "list", *common)
    assert listed.returncode == 0
    assert step in listed.stdout and "COMPLETED" in listed.stdout
    assert "instances=1/2 held" in listed.stdout
    (row,) = [json.loads(line) for line in
              _pacs("mpps", "list", *common, "--state", "COMPLETED", "--json").stdout.split("\n")
              if line]
    assert row["station"] == "MR1" and row["end"] == "20240105 090000"
    assert _pacs("mpps", "list", *common, "--state", "IN PROGRESS").stdout == ""
    shown = json.loads(_pacs("mpps", "show", *common, step).stdout)
    assert [(i["sop_instance"], i["held"]) for i in shown["instances"]] == [
        (held.sop_instance_uid, True), (missing, False)]
    assert Dataset.from_json(shown["attributes"]).PerformedProcedureStepID == "PPS1"
    unknown = _pacs("mpps", "show", *common, "1.2.3.4")
    assert unknown.returncode == 1 and "no performed procedure step" in unknown.stderr
