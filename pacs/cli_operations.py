"""Operator subcommands of `pacs`: verify, reindex, delete (issue #7 fills these in).

Layer: top, beside cli.py. Each subcommand sets `handler(services, arguments) -> exit code`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any


def add_operation_commands(
    commands: Any, settings_arguments: Callable[[argparse.ArgumentParser], None]
) -> None:
    """Register the operator subcommands on the `pacs` parser."""
    del commands, settings_arguments
