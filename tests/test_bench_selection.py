"""`scripts/bench peers` and `scripts/bench idle` read `--peers` and `--minipacs-from` through
one function and hold their servers in one workspace: the same errors, the same clean-up.
No servers, no timing: the arguments and one child process only.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from pacs.bench.__main__ import main
from pacs.bench.peers import SelectionError, parse_peer_selection
from pacs.bench.procs import workspace

REPO = Path(__file__).resolve().parent.parent
PEERS = ("minipacs", "dcmqrscp", "orthanc")


def test_selection_keeps_the_named_peers_and_resolves_each_checkout(tmp_path: Path) -> None:
    (tmp_path / "pacs").mkdir()
    names, sources = parse_peer_selection(" orthanc, minipacs ,", [f"before={tmp_path}/."],
                                          PEERS)
    assert names == ["orthanc", "minipacs"]
    assert sources == [("before", tmp_path.resolve())]


@pytest.mark.parametrize(("peers", "message"), [
    ("minipacs,pacsx", "--peers: unknown pacsx; choose from minipacs,dcmqrscp,orthanc"),
    (" , ", "--peers: unknown (none given); choose from minipacs,dcmqrscp,orthanc"),
])
def test_selection_refuses_a_peer_it_does_not_know(peers: str, message: str) -> None:
    with pytest.raises(SelectionError, match=f"^{re.escape(message)}$"):
        parse_peer_selection(peers, [], PEERS)


def test_selection_refuses_a_checkout_without_a_label(tmp_path: Path) -> None:
    with pytest.raises(SelectionError, match="^--minipacs-from takes LABEL=DIR$"):
        parse_peer_selection("minipacs", [str(tmp_path)], PEERS)


def test_selection_refuses_a_folder_that_is_no_checkout(tmp_path: Path) -> None:
    with pytest.raises(SelectionError,
                       match="^--minipacs-from needs a checkout folder holding pacs/$"):
        parse_peer_selection("minipacs", [f"old={tmp_path}"], PEERS)


@pytest.mark.parametrize(("command", "prefix"), [("peers", "bench"), ("idle", "bench idle")])
def test_both_commands_print_the_selection_error_and_exit_2(
        command: str, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--minipacs-from", f"old={tmp_path}"]) == 2
    assert capsys.readouterr().err == (
        f"{prefix}: --minipacs-from needs a checkout folder holding pacs/\n")


def test_workspace_on_sigterm_stops_its_processes_and_removes_its_folder(
        capsys: pytest.CaptureFixture[str]) -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with workspace(None, "minipacs-selection-test-", "bench test") as (work, registry):
            child = registry.spawn([sys.executable, "-c", "import time; time.sleep(600)"],
                                   work / "child.log")
            os.kill(os.getpid(), signal.SIGTERM)
    assert child.poll() is not None
    assert not work.exists()
    assert signal.getsignal(signal.SIGTERM) == before
    assert "bench test: interrupted: stopping every process started" in capsys.readouterr().err
