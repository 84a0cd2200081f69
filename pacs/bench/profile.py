"""`--profile`: py-spy samples minipacs while storescu pushes the data set over one
association (an extra run, not one of the timed ones), and the stacks are summarised.

Layer: tool (pacs.bench). Needs py-spy (`.venv/bin/pip install py-spy`) and the right to
ptrace the server (root, or kernel.yama.ptrace_scope 0).
"""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pacs.bench import clients
from pacs.bench.measure import Context
from pacs.bench.peers import Peer

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy executable next to this Python, or on PATH."""
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


def summarize(raw: Path, top: int = 20) -> dict[str, Any]:
    """Self and inclusive shares of functions in py-spy's raw (collapsed stacks) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        stack, count = match.group(1), int(match.group(2))
        frames = [_FRAME_LINE.sub(")", frame) for frame in stack.split(";")]
        frames = [frame for frame in frames if not frame.startswith("process ")
                  and not frame.startswith("thread ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count

    def share(counter: Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return {"samples": total, "self": share(own) if total else [],
            "inclusive": share(inclusive) if total else []}


def profile_store(peer: Peer, ctx: Context, out: Path) -> dict[str, Any]:
    """A fresh server, py-spy attached, the data set pushed once; the summary of the stacks."""
    tool = py_spy()
    if tool is None:
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    out.mkdir(parents=True, exist_ok=True)
    running = peer.start(ctx.work / peer.name / "profile", ctx.registry, ctx.destination)
    raw = out / f"{peer.name}-store.raw.txt"
    log = out / f"{peer.name}-py-spy.log"
    spy = ctx.registry.spawn([tool, "record", "--pid", str(running.process.pid),
                              "--subprocesses", "--rate", "200", "--format", "raw",
                              "-o", str(raw)], log)
    try:
        deadline = time.monotonic() + 20
        while "Sampling process" not in log.read_text(errors="replace"):
            if spy.poll() is not None or time.monotonic() > deadline:
                return {"error": "py-spy did not attach: " + log.read_text()[-500:]}
            time.sleep(0.1)
        outcome = clients.store(("127.0.0.1", running.port), peer.ae_title, ctx.files, 1,
                                ctx.bulk_timeout(ctx.manifest.instances))
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)
    finally:
        ctx.registry.stop(spy)
        peer.stop(running, ctx.registry)
    if not raw.exists():
        return {"error": "py-spy wrote no output: " + log.read_text()[-500:]}
    summary = summarize(raw)
    summary.update(raw=str(raw), seconds=round(outcome.seconds, 2), stored=outcome.count,
                   rate_under_profiler=round(ctx.manifest.instances / outcome.seconds, 1))
    return summary


def profile_markdown(name: str, summary: dict[str, Any], top: int = 12) -> str:
    """A short Markdown summary: the top functions by self and by inclusive time."""
    if "error" in summary:
        return f"Profile of {name}: {summary['error']}\n"
    lines = [f"Profile of {name} storing over one association under py-spy "
             f"({summary['samples']} samples, {summary['rate_under_profiler']} instances/s "
             f"while sampled; raw stacks: {summary['raw']}):", "",
             "| self % | function | | inclusive % | function |", "|---:|---|---|---:|---|"]
    for (own_name, own_pct), (inc_name, inc_pct) in zip(
            summary["self"][:top], summary["inclusive"][:top], strict=False):
        lines.append(f"| {own_pct} | `{own_name}` | | {inc_pct} | `{inc_name}` |")
    return "\n".join(lines) + "\n"
