"""`pacs` command line: arguments, logging and pydicom's configuration; import, stats, db.

Room: cli/. Imports config, services/ and index/ (schema version); `serve` lives in
cli/serve.py, the one module that starts the protocol faces; `conformance` in
cli/conformance.py, which describes the DIMSE face. The only module that sets
`pydicom.config`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pacs import __version__
from pacs.config import ConfigError, Settings, load_settings
from pacs.index.records import IndexUnavailable

if TYPE_CHECKING:
    from pacs.services.context import Services

# pydicom, peewee and the services are imported where used: `serve --workers N`'s supervisor
# needs none of them and stays small in memory (cli/workers.py).

log = logging.getLogger("pacs")
DEFAULT_CONFIG = Path("config/pacs.toml")


class JsonFormatter(logging.Formatter):
    """One JSON object per log line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes each record to `sys.stderr` as it is then, not as it was when logging was set up
    (a caller that swaps stderr, like a test runner, would leave the handler a closed file)."""

    @property
    def stream(self) -> Any:  # type: ignore[override]
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # always the current sys.stderr


def configure_logging(level: str, log_format: str = "text") -> None:
    """Root logging at `level`; pynetdicom only from WARNING unless DEBUG."""
    handler = StderrHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pynetdicom").setLevel("DEBUG" if level == "DEBUG" else "WARNING")


def configure_pydicom() -> None:
    """Read what modalities send, as leniently as pydicom allows, without warnings."""
    import pydicom.config

    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE


def _settings_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file (default: config/pacs.toml)")
    parser.add_argument("--storage", help="archive folder")
    parser.add_argument("--database", help="sqlite:///PATH or postgresql://USER@HOST:PORT/DB")
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR")
    parser.add_argument("--log-format", help="text or json")


def build_parser(serve_only: bool = False) -> argparse.ArgumentParser:
    """The argument parser of every subcommand; each sets `handler` to the function it runs.
    `serve_only`: just `serve`, whose modules the other subcommands' parsers would import
    (pydicom, the DIMSE face, the services): a `--workers` supervisor needs none of them."""
    parser = argparse.ArgumentParser(prog="pacs", description="minipacs DICOM archive")
    parser.add_argument("--version", action="version", version=f"minipacs {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the DICOM and DICOMweb server")
    _settings_arguments(serve)
    serve.add_argument("--ae-title", help="our AE title (default MINIPACS)")
    serve.add_argument("--host", help="address to listen on")
    serve.add_argument("--port", help="port to listen on (0: any free port)")
    serve.add_argument("--remote", action="append", dest="remotes", metavar="AE@HOST:PORT",
                       help="a C-MOVE destination (repeatable)")
    serve.add_argument("--duplicates", help="keep, replace or reject")
    serve.add_argument("--max-pdu", help="largest PDU we accept, bytes")
    serve.add_argument("--max-associations", help="associations at once")
    serve.add_argument("--allow-calling-ae", action="append", dest="peers", metavar="AE",
                       help="turn the allow-list on and let AE use every service (repeatable)")
    serve.add_argument("--tls-port", help="also listen with DICOM TLS on this port")
    serve.add_argument("--metrics-port", help="serve Prometheus metrics on this port")
    serve.add_argument("--http-port",
                       help="DICOMweb port (default 8080; 0: off; auto: any free port)")
    serve.add_argument("--worklist-folder", help="serve the *.wl files of this folder too")
    serve.add_argument("--workers", type=int, default=1,
                       help="server processes; connections go to the least busy; default 1")
    serve.add_argument("--ready-file", type=Path, help=argparse.SUPPRESS)
    # A worker's HTTP port is shared with the other workers (SO_REUSEPORT, cli/workers.py).
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    # A worker's hand-over channels from its supervisor (cli/workers.py): KIND:FD:PORT,...
    serve.add_argument("--handover", help=argparse.SUPPRESS)
    serve.set_defaults(handler=None)
    if serve_only:
        return parser
    from pacs.cli.conformance import add_conformance_command
    from pacs.cli.modality import add_modality_commands
    from pacs.cli.operations import add_operation_commands

    importer = commands.add_parser("import", help="store DICOM files from folders")
    _settings_arguments(importer)
    importer.add_argument("paths", nargs="+", type=Path, help="files or folders")
    importer.set_defaults(handler=lambda services, arguments: run_import(services,
                                                                         arguments.paths))

    stats = commands.add_parser("stats", help="counts of what the archive holds")
    _settings_arguments(stats)
    stats.set_defaults(handler=lambda services, arguments: run_stats(services))

    database = commands.add_parser("db", help="index schema: version, upgrade")
    _settings_arguments(database)
    database.add_argument("action", choices=("version", "upgrade"))
    database.set_defaults(handler=None)

    add_operation_commands(commands, _settings_arguments)
    add_conformance_command(commands, _settings_arguments)
    add_modality_commands(commands, _settings_arguments)
    return parser


_SETTING_FLAGS = ("storage", "database", "log_level", "log_format", "ae_title", "host", "port",
                  "remotes", "duplicates", "max_pdu", "max_associations", "peers", "tls_port",
                  "metrics_port", "http_port", "worklist_folder")


def settings_from(arguments: argparse.Namespace) -> Settings:
    """Settings from the config file, the environment and the flags given."""
    config_file = arguments.config
    if config_file is None and DEFAULT_CONFIG.is_file():
        config_file = DEFAULT_CONFIG
    overrides = {name: getattr(arguments, name, None) for name in _SETTING_FLAGS}
    return load_settings(config_file, overrides=overrides)


def run_import(services: Services, paths: Sequence[Path]) -> int:
    """Import files and folders; print a summary. Exit 1 when any DICOM file was rejected."""
    from pacs.cli.operations import progress_bar
    from pacs.services.store import import_files, iter_files

    missing = [p for p in paths if not p.exists()]
    if missing:
        raise ConfigError(f"import: {missing[0]} does not exist")
    total = sum(1 for _ in iter_files(paths)) if sys.stderr.isatty() else 0
    summary = import_files(services.ingestor, paths, progress_bar(total))
    print(f"stored: {summary.stored}")
    print(f"duplicates: {summary.duplicates}")
    print(f"not DICOM (skipped): {summary.not_dicom}")
    print(f"rejected: {len(summary.rejected)}")
    for path, reason in summary.rejected:
        print(f"  {path}: {reason}")
    return 1 if summary.rejected else 0


def run_stats(services: Services) -> int:
    """Print counts of patients, studies, series, instances and bytes."""
    stats = services.index.stats()
    print(f"patients:  {stats.patients}")
    print(f"studies:   {stats.studies}")
    print(f"series:    {stats.series}")
    print(f"instances: {stats.instances}")
    print(f"bytes:     {stats.bytes}")
    return 0


def run_db(settings: Settings, action: str) -> int:
    """`pacs db version` prints the schema version; `pacs db upgrade` applies migrations."""
    from pacs.index.database import Index
    from pacs.index.schema import SCHEMA_VERSION

    index = Index(settings.database, create=False)
    try:
        if action == "upgrade":
            applied = index.upgrade()
            print(f"applied migrations: {', '.join(map(str, applied)) or 'none'}")
        version = index.schema_version()
        print(f"schema version: {'none (empty database)' if version is None else version}"
              f" (this release: {SCHEMA_VERSION})")
        return 0 if version == SCHEMA_VERSION else 1
    finally:
        index.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `pacs` command."""
    given = sys.argv[1:] if argv is None else list(argv)
    arguments = build_parser(serve_only=given[:1] == ["serve"]).parse_args(given)
    try:
        settings = settings_from(arguments)
        configure_logging(settings.log_level, settings.log_format)
        if arguments.command == "serve" and arguments.workers != 1:
            from pacs.cli.workers import run_workers

            return run_workers(settings, arguments, given)
        configure_pydicom()
        from pacs.services.context import open_services

        if arguments.command == "serve":
            from pacs.cli.serve import run_serve

            return run_serve(settings, arguments)
        if arguments.command == "db":
            return run_db(settings, arguments.action)
        if arguments.command == "conformance":
            from pacs.cli.conformance import run_conformance

            return run_conformance(settings, arguments.html)
        services = open_services(settings)
        try:
            return int(arguments.handler(services, arguments))
        finally:
            services.close()
    except ConfigError as exc:
        print(f"pacs: error: {exc}", file=sys.stderr)
        return 2
    except IndexUnavailable as exc:
        print(f"pacs: error: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        return 130
