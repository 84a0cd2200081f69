"""C-GET through DCMTK's getscu (Patient Root -P and Study Root -S, every level), on each index
backend: the instances come back over the same association, data set for data set as stored.

The transfer syntax of each storage context of a C-GET is chosen at association negotiation,
by the server's accepted-syntax order (pacs/server.py), before anything is retrieved: the data
sets are compared decoded, and byte for byte when the syntax negotiated is the stored one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pacs.dimse.server import RunningServer
from tests.dcmtk import run_tool
from tests.integration.move_support import assert_same_instance, populate
from tests.integration.test_move_dcmtk import CASES


def _getscu(server: RunningServer, model: str, keys: dict[str, str], folder: Path) -> str:
    host, port = server.address
    folder.mkdir(parents=True, exist_ok=True)
    arguments = ["-v", "-aet", "GETSCU", "-aec", "MINIPACS", f"-{model}", "+B",
                 "-od", str(folder)]
    for keyword, value in keys.items():
        arguments += ["-k", f"{keyword}={value}"]
    result = run_tool("getscu", [*arguments, host, str(port)], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


# PS3.4 C.4.3.1: a C-GET at each level of each model returns that level's instances as C-STORE
# sub-operations on the same association (SCP/SCU role selection, PS3.7 D.3.3.4).
@pytest.mark.parametrize("case", list(CASES))
def test_getscu_receives_the_level_as_stored(
    case: str, server_factory: Callable[..., RunningServer], tmp_path: Path,
) -> None:
    model, keys, expected = CASES[case]
    server = server_factory()
    populate(server.services, tmp_path / "in")
    output = _getscu(server, model, keys, tmp_path / "out")
    assert "Received C-GET Response (Success)" in output, output
    assert f"Number of Completed Suboperations : {expected}" in output, output
    assert "Number of Failed Suboperations    : 0" in output, output
    received = list((tmp_path / "out").iterdir())
    assert len(received) == expected
    for path in received:
        assert_same_instance(server.services, path)
