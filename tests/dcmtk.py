"""Running DCMTK's command-line tools in tests: skip on a laptop without them, fail under CI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_tool(name: str) -> str:
    """The path of a DCMTK binary; skips the test (fails under CI=true) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"DCMTK's {name} is not installed (apt-get install dcmtk; scripts/test does it)"
        if IN_CI:
            pytest.fail(message + " - under CI=true this is an error, not a skip")
        pytest.skip(message)
    return path


def dcmtk_env() -> dict[str, str]:
    """Environment for DCMTK tools: TCP_NODELAY on (DCMTK reads it from the environment)."""
    return {**os.environ, "TCP_NODELAY": "1"}


def run_tool(name: str, args: Sequence[str], timeout: float = 120,
             check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a DCMTK tool to completion and return its result (stdout and stderr as text)."""
    result = subprocess.run(
        [require_tool(name), *args], capture_output=True, text=True, timeout=timeout,
        env=dcmtk_env(),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{name} failed ({result.returncode}):\n{result.stdout}\n"
                             f"{result.stderr}")
    return result


class StorescuProgress:
    """Reads storescu -v output line by line: which files were sent, which got Success."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.acknowledged: list[str] = []
        self._current: str | None = None

    def feed(self, line: str) -> None:
        """Take one line of storescu -v output."""
        if "Sending file: " in line:
            self._current = line.split("Sending file: ", 1)[1].strip()
            self.sent.append(self._current)
        elif self._current and "Received Store Response (Success)" in line:
            self.acknowledged.append(self._current)
            self._current = None

    @classmethod
    def of(cls, output: str) -> StorescuProgress:
        """The progress a whole storescu -v output shows."""
        progress = cls()
        for line in output.splitlines():
            progress.feed(line)
        return progress
