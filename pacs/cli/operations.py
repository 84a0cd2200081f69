"""Operator subcommands of `pacs`: verify, reindex, delete (issue #7).

Room: cli/. Imports services/ (operations, verify). Each subcommand sets
`handler(services, arguments) -> exit code`; the work is done in services/, this module only
parses, asks and prints.
Exit codes: 0 all well, 1 something is wrong (or was not found), 2 usage error; 3 is the
index being unavailable (cli.main).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: building the parser must stay light (cli/workers.py)
    from pacs.services.context import Services
    from pacs.services.operations import Problem


def add_operation_commands(
    commands: Any, settings_arguments: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register the operator subcommands on the `pacs` parser."""
    checker = commands.add_parser(
        "verify", help="compare index and archive; report (and --repair) what disagrees",
        description="Exit 0 when index and archive agree, 1 when a problem remains.")
    settings_arguments(checker)
    checker.add_argument("--repair", action="store_true",
                         help="finish interrupted deletes, remove old temp files, re-index "
                              "files without a row")
    checker.add_argument("--forget-missing", action="store_true",
                         help="with --repair: also remove index rows whose file is gone")
    checker.add_argument("--quick", action="store_true",
                         help="compare file sizes only, do not read every file for SHA-256")
    checker.add_argument("--temp-age", type=float, default=3600.0, metavar="SECONDS",
                         help="temp files younger than this belong to stores in flight "
                              "(default 3600)")
    checker.set_defaults(handler=run_verify)

    rebuild = commands.add_parser(
        "reindex", help="rebuild the index from the archive files (idempotent)",
        description="Upserts every archive file into the index, then removes rows whose "
                    "file is gone. Exit 1 when some file could not be indexed.")
    settings_arguments(rebuild)
    rebuild.set_defaults(handler=run_reindex)

    remover = commands.add_parser(
        "delete", help="delete a patient, study, series or instance: files and rows",
        description="Exit 0 when deleted, 1 when nothing matches, 2 when ambiguous.")
    settings_arguments(remover)
    target = remover.add_mutually_exclusive_group(required=True)
    target.add_argument("--patient", metavar="PATIENT_ID")
    target.add_argument("--study", metavar="STUDY_INSTANCE_UID")
    target.add_argument("--series", metavar="SERIES_INSTANCE_UID")
    target.add_argument("--instance", metavar="SOP_INSTANCE_UID")
    remover.add_argument("--issuer", help="Issuer of Patient ID (with --patient)")
    remover.add_argument("--dry-run", action="store_true", help="list, delete nothing")
    remover.add_argument("--yes", action="store_true", help="do not ask on a terminal")
    remover.set_defaults(handler=run_delete)


def progress_bar(total: int) -> Callable[[int], None] | None:
    """A progress bar on stderr when it is a terminal (redrawn at most ~500 times)."""
    if not sys.stderr.isatty() or total == 0:
        return None

    step = max(1, total // 500)  # redraw at most ~500 times, whatever the archive's size

    def show(done: int) -> None:
        if done % step and done < total:
            return
        filled = 40 * min(done, total) // total
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (40 - filled)}] {done}/{total}")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def _print_problem(problem: Problem) -> None:
    uid = f" {problem.uid}" if problem.uid else ""
    state = " [repaired]" if problem.repaired else ""
    print(f"{problem.kind}: {problem.path}{uid}: {problem.detail}{state}", flush=True)


def run_verify(services: Services, arguments: argparse.Namespace) -> int:
    """`pacs verify`: print each problem, then a summary; 0 only when nothing remains."""
    from pacs.services.operations import OperationError
    from pacs.services.verify import verify

    if arguments.forget_missing and not arguments.repair:
        print("pacs: error: --forget-missing needs --repair", file=sys.stderr)
        return 2
    try:
        report = verify(
            services.archive, services.index,
            checksums=not arguments.quick, repair=arguments.repair,
            forget_missing=arguments.forget_missing, temp_age=arguments.temp_age,
            on_problem=_print_problem,
        )
    except OperationError as exc:
        print(f"pacs: error: {exc}", file=sys.stderr)
        return 1
    print(f"checked: {report.rows} index rows, {report.files} files"
          + (" (sizes only)" if arguments.quick else ""))
    if not report.found:
        print("no problems")
    for kind, count in sorted(report.found.items()):
        print(f"{kind}: {count} found, {report.repaired[kind]} repaired")
    if report.remaining:
        print(f"{report.remaining} problems need attention")
        return 1
    return 0


def run_reindex(services: Services, arguments: argparse.Namespace) -> int:
    """`pacs reindex`: rebuild the index from the files, with a progress bar on a terminal."""
    from pacs.services.operations import OperationError
    from pacs.services.verify import reindex

    archive = services.archive
    total = sum(1 for _ in archive.iter_files()) if sys.stderr.isatty() else 0
    try:
        summary = reindex(archive, services.index, progress_bar(total))
    except OperationError as exc:
        print(f"pacs: error: {exc}", file=sys.stderr)
        return 1
    print(f"files: {summary.files}")
    print(f"indexed: {summary.indexed}")
    print(f"moved to their UID path: {summary.moved}")
    print(f"identical copies removed: {summary.redundant_removed}")
    print(f"checksums changed: {summary.checksum_changed}")
    print(f"rows without a file removed: {summary.rows_removed}")
    print(f"not indexed: {len(summary.rejected)}")
    for path, reason in summary.rejected:
        print(f"  {path}: {reason}")
    return 1 if summary.rejected else 0


def run_delete(services: Services, arguments: argparse.Namespace) -> int:
    """`pacs delete`: remove one patient, study, series or instance, files and rows."""
    from pacs.services.operations import (
        OperationError,
        delete,
        recover_deletes,
        select_for_delete,
    )

    level = next(name for name in ("patient", "study", "series", "instance")
                 if getattr(arguments, name) is not None)
    key = getattr(arguments, level)
    if arguments.issuer is not None and level != "patient":
        print("pacs: error: --issuer goes with --patient", file=sys.stderr)
        return 2
    recover_deletes(services.archive, services.index)
    try:
        records = select_for_delete(services.index, level, key, arguments.issuer)
    except OperationError as exc:
        print(f"pacs: error: {exc}", file=sys.stderr)
        return 2 if "issuers" in str(exc) else 1
    studies = len({r.study_instance_uid for r in records})
    what = f"{len(records)} instances in {studies} studies ({level} {key})"
    if arguments.dry_run:
        for record in records:
            print(f"{record.sop_instance_uid} {record.file_path}")
        print(f"would delete {what}")
        return 0
    if not arguments.yes and sys.stdin.isatty():
        answer = input(f"Delete {what}? This cannot be undone. [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    result = delete(services.archive, services.index, records)
    print(f"deleted {result.instances} instances, {result.files} files"
          + (f" ({result.missing_files} files were already missing)"
             if result.missing_files else ""))
    return 0
