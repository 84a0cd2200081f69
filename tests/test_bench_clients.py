"""The bench's pynetdicom C-FIND client against `pacs serve`: over one association, every
query gets every response. No timing assertions: figures on a shared test machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pacs.bench.dataset import generate
from pacs.bench.measure import query_shapes
from pacs.bench.peers import MinipacsPeer
from pacs.bench.procs import workspace

QUERIES = 300  # pynetdicom's own pause lost about one response in 1,000 queries
CLIENT = """
import json, sys, time
from pacs.bench.clients import find_one_association
port, called_ae, query, repeat = sys.argv[1:]
outcome = find_one_association(("127.0.0.1", int(port)), called_ae, json.loads(query),
                               int(repeat), time.monotonic() + 500)
print(json.dumps({"error": outcome.error, "count": outcome.count,
                  "queries": len(outcome.samples)}))
"""


# PS3.4 C.4.1.3.1 and PS3.7 9.1.2: each C-FIND on the association answers one Pending response
# per match, then Success; the client reads them all (its reactor parked, pacs/bench/silent.py)
# and checks that every query counted the same matches.
def test_find_one_association_receives_every_response_of_hundreds_of_queries(
        tmp_path: Path) -> None:
    manifest = generate(tmp_path / "data", 20, small=True)
    with workspace(tmp_path / "work", "", "test") as (work, registry):
        folder = work / "minipacs"
        subprocess.run([sys.executable, "-m", "pacs", "import", "--storage",
                        str(folder / "archive"), "--database",
                        f"sqlite:///{folder}/index.sqlite", "--log-level", "WARNING",
                        str(tmp_path / "data")], check=True, capture_output=True, timeout=120)
        peer = MinipacsPeer()
        running = peer.start(folder, registry, None)
        shape = next(shape for shape in query_shapes(manifest)
                     if shape.name == "study_by_patient_id")
        # The client runs as under `scripts/bench`: in a process of its own, on pynetdicom's
        # own reactor (this test process has the server's event-driven one installed).
        client = subprocess.run([sys.executable, "-c", CLIENT, str(running.port),
                                 peer.ae_title, json.dumps(shape.query), str(QUERIES)],
                                capture_output=True, text=True, timeout=600, check=True)
    outcome = json.loads(client.stdout)
    assert outcome["error"] is None
    assert outcome["queries"] == QUERIES
    assert outcome["count"] == shape.expected > 1
    assert running.process.poll() is not None  # the workspace stopped the server
