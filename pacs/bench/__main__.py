"""`python -m pacs.bench [SUBCOMMAND] [OPTIONS]`; without a subcommand, `peers`.

Subcommands are the modules `pacs/bench/cmd_<name>.py` (see the package docstring).
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

import pacs.bench

DEFAULT_SUBCOMMAND = "peers"


def subcommands() -> list[str]:
    """Names of the available subcommands, from the `cmd_*` modules of this package."""
    return sorted(module.name[4:] for module in pkgutil.iter_modules(pacs.bench.__path__)
                  if module.name.startswith("cmd_"))


def build_parser() -> argparse.ArgumentParser:
    """The parser with one subparser per `cmd_*` module."""
    parser = argparse.ArgumentParser(
        prog="scripts/bench",
        description="minipacs benchmarks; without a subcommand runs "
                    f"'{DEFAULT_SUBCOMMAND}'.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name in subcommands():
        module = importlib.import_module(f"pacs.bench.cmd_{name}")
        sub = commands.add_parser(name, help=getattr(module, "HELP", None),
                                  description=(module.__doc__ or "").split("\n\n")[0])
        module.add_arguments(sub)
        sub.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line (inserting the default subcommand) and run it."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or (args[0].startswith("-") and args[0] not in ("-h", "--help")):
        args.insert(0, DEFAULT_SUBCOMMAND)
    arguments = build_parser().parse_args(args)
    try:
        return int(arguments.run(arguments))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
