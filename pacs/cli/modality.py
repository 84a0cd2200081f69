"""`pacs worklist add|list|remove` and `pacs mpps list|show`: what a modality sees and what it
reported, from the shell.

Room: cli/. Imports services/ (worklist, mpps, context) and model/mpps. Each subcommand sets
`handler(services, arguments) -> exit code`; the work is done in services/, this module only
parses and prints. Exit codes: 0 done, 1 something was rejected or not found (cli.main: 2 usage
error, 3 index unavailable).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from pacs.model.mpps import STATES
from pacs.services.context import Services
from pacs.services.mpps import StepView, list_steps, show_step
from pacs.services.worklist import add_items, list_items, remove_items


def add_modality_commands(
    commands: Any, settings_arguments: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register `pacs worklist ...` and `pacs mpps ...` on the `pacs` parser."""
    worklist = commands.add_parser(
        "worklist", help="modality worklist items: add, list, remove",
        description="The worklist the Modality Worklist C-FIND serves is kept in the index. "
                    "Items added here stay until removed; items of the worklist folder "
                    "follow their files.")
    actions = worklist.add_subparsers(dest="action", required=True)
    adder = actions.add_parser("add", help="add (or replace) items from worklist files")
    settings_arguments(adder)
    adder.add_argument("--worklist-folder", help="the worklist folder (see `list`)")
    adder.add_argument("files", nargs="+", type=Path, help="DICOM worklist item files")
    adder.set_defaults(handler=run_worklist_add)
    lister = actions.add_parser("list", help="every item, with its state")
    settings_arguments(lister)
    lister.add_argument("--worklist-folder", help="read this folder's *.wl files first")
    lister.add_argument("--json", action="store_true", help="one DICOM JSON object per item")
    lister.set_defaults(handler=run_worklist_list)
    remover = actions.add_parser("remove", help="remove items added with `add`, by id")
    settings_arguments(remover)
    remover.add_argument("ids", nargs="+", type=int, help="item ids from `pacs worklist list`")
    remover.set_defaults(handler=run_worklist_remove)

    mpps = commands.add_parser(
        "mpps", help="modality performed procedure steps: list, show",
        description="The steps modalities reported with MPPS N-CREATE and N-SET.")
    steps = mpps.add_subparsers(dest="action", required=True)
    lister = steps.add_parser("list", help="every step: state, station, patient, instances")
    settings_arguments(lister)
    lister.add_argument("--state", action="append", choices=STATES, help="only these states")
    lister.add_argument("--json", action="store_true", help="one JSON object per step")
    lister.set_defaults(handler=run_mpps_list)
    shower = steps.add_parser("show", help="one step: its attributes and listed instances")
    settings_arguments(shower)
    shower.add_argument("uid", help="the step's SOP Instance UID")
    shower.set_defaults(handler=run_mpps_show)


def _text(dataset: Dataset, keyword: str) -> str:
    return str(dataset.get(keyword, "") or "")


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def run_worklist_add(services: Services, arguments: argparse.Namespace) -> int:
    """Add items; print what happened to each file. Exit 1 when any file was rejected."""
    summary = add_items(services, arguments.files)
    print(f"added: {len(summary.added)}")
    print(f"replaced: {len(summary.replaced)}")
    print(f"rejected: {len(summary.rejected)}")
    for path, reason in summary.rejected:
        print(f"  {path}: {reason}")
    return 1 if summary.rejected else 0


def run_worklist_list(services: Services, arguments: argparse.Namespace) -> int:
    """Print one line per item (id, state, scheduled start, station, modality, patient,
    accession, source), or DICOM JSON with --json."""
    for record in list_items(services):
        item = Dataset.from_json(record.dataset)
        if arguments.json:
            print(json.dumps({"id": record.id, "state": record.state, "source": record.source,
                              "dataset": json.loads(record.dataset)}))
            continue
        step = item.ScheduledProcedureStepSequence[0]
        start = f"{_text(step, 'ScheduledProcedureStepStartDate')} " \
                f"{_text(step, 'ScheduledProcedureStepStartTime')}"
        print(f"{record.id:>5}  {record.state:<12} {start:<16} "
              f"{_text(step, 'ScheduledStationAETitle'):<16} {_text(step, 'Modality'):<4} "
              f"{_text(item, 'PatientID')} {_text(item, 'PatientName')}  "
              f"acc={_text(item, 'AccessionNumber')}  "
              f"source={record.source or 'pacs worklist add'}")
    return 0


def run_worklist_remove(services: Services, arguments: argparse.Namespace) -> int:
    """Remove items by id. Exit 1 when some could not be removed."""
    refused = remove_items(services, arguments.ids)
    for item_id, reason in refused:
        print(f"{item_id}: not removed: {reason}", file=sys.stderr)
    print(f"removed: {len(arguments.ids) - len(refused)}")
    return 1 if refused else 0


def _summary(view: StepView) -> dict[str, Any]:
    ds = view.dataset
    return {
        "sop_instance_uid": view.record.sop_instance_uid,
        "state": view.record.state,
        "calling_ae": view.record.calling_ae,
        "station": _text(ds, "PerformedStationAETitle"),
        "step_id": _text(ds, "PerformedProcedureStepID"),
        "patient_id": _text(ds, "PatientID"),
        "patient_name": _text(ds, "PatientName"),
        "start": f"{_text(ds, 'PerformedProcedureStepStartDate')} "
                 f"{_text(ds, 'PerformedProcedureStepStartTime')}".strip(),
        "end": f"{_text(ds, 'PerformedProcedureStepEndDate')} "
               f"{_text(ds, 'PerformedProcedureStepEndTime')}".strip(),
        "instances_listed": len(view.listed),
        "instances_held": view.held,
        "updated": _when(view.record.updated_at),
    }


def run_mpps_list(services: Services, arguments: argparse.Namespace) -> int:
    """Print one line per step, or one JSON object per step with --json."""
    for view in list_steps(services.index, tuple(arguments.state or ())):
        row = _summary(view)
        if arguments.json:
            print(json.dumps(row))
            continue
        print(f"{row['sop_instance_uid']}  {row['state']:<12} {row['station']:<16} "
              f"{row['step_id']:<10} {row['patient_id']} {row['patient_name']}  "
              f"start={row['start']} end={row['end'] or '-'}  "
              f"instances={row['instances_held']}/{row['instances_listed']} held")
    return 0


def run_mpps_show(services: Services, arguments: argparse.Namespace) -> int:
    """Print one step's summary, its attributes (DICOM JSON) and its listed instances."""
    view = show_step(services.index, arguments.uid)
    if view is None:
        print(f"no performed procedure step {arguments.uid}", file=sys.stderr)
        return 1
    print(json.dumps({**_summary(view), "attributes": json.loads(view.record.dataset),
                      "instances": [{"series": s, "sop_class": c, "sop_instance": i,
                                     "held": h} for s, c, i, h in view.listed]}, indent=2))
    return 0
