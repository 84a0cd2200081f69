#!/usr/bin/env python3
"""CPU per stored instance of the ingest pipeline alone: `Ingestor.store` in this process.

Generates the benchmark's CT data set (pacs/bench/dataset.py; reused when present), then for
each round stores every file into a fresh archive and SQLite index. As a C-STORE receiver
does, each file is written into the archive's temp folder and hashed on the way (not timed);
then `Ingestor.store(..., received=(sha256, size))` is timed with the process's CPU times
(user and system, getrusage) and the wall clock. Prints
the median round's figures per stored instance.

    .venv/bin/python scripts/measure_ingest_cpu.py                      # 300 CT, 5 rounds
    .venv/bin/python scripts/measure_ingest_cpu.py --profile /tmp/ingest.prof   # + cProfile
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pacs.archive.files import Archive  # noqa: E402
from pacs.bench.dataset import generate  # noqa: E402
from pacs.cli.main import configure_pydicom  # noqa: E402
from pacs.index.database import Index  # noqa: E402
from pacs.services.store import Ingestor  # noqa: E402


def one_round(files: list[Path], profiler: cProfile.Profile | None
              ) -> tuple[float, float, float]:
    """Store every file into a fresh archive; (user CPU, system CPU, wall) seconds spent in
    store."""
    with tempfile.TemporaryDirectory(prefix="ingest-cpu-") as work:
        archive = Archive(Path(work) / "archive")
        index = Index(f"sqlite:///{work}/index.sqlite")
        ingestor = Ingestor(archive, index)
        user = system = wall = 0.0
        try:
            for path in files:
                staged = archive.new_temp_path()
                data = path.read_bytes()
                staged.write_bytes(data)
                received = (hashlib.sha256(data).hexdigest(), len(data))
                before = resource.getrusage(resource.RUSAGE_SELF)
                started_wall = time.perf_counter()
                if profiler:
                    profiler.enable()
                result = ingestor.store(staged, source_ae="MEASURE", received=received)
                if profiler:
                    profiler.disable()
                after = resource.getrusage(resource.RUSAGE_SELF)
                user += after.ru_utime - before.ru_utime
                system += after.ru_stime - before.ru_stime
                wall += time.perf_counter() - started_wall
                assert result.outcome == "stored", result
        finally:
            index.close()
    return user, system, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--small", action="store_true", help="32x32 pixels")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=Path("/tmp/minipacs-ingest-data"))
    parser.add_argument("--profile", type=Path, help="write a cProfile of every round here")
    arguments = parser.parse_args()
    configure_pydicom()
    manifest = generate(arguments.data, arguments.instances, arguments.small)
    files = [arguments.data / name for name in manifest.files]
    profiler = cProfile.Profile() if arguments.profile else None
    rounds = [one_round(files, profiler) for _ in range(arguments.rounds)]
    count = len(files)

    def per_store(values: list[float]) -> str:
        ms = sorted(v / count * 1000 for v in values)
        return f"{statistics.median(ms):.3f} ms (min {ms[0]:.3f}, max {ms[-1]:.3f})"

    print(f"{count} instances x {arguments.rounds} rounds, per store (median of rounds):")
    print(f"  CPU, user + system  {per_store([u + s for u, s, _ in rounds])}")
    print(f"  CPU, user           {per_store([u for u, _, _ in rounds])}")
    print(f"  CPU, system         {per_store([s for _, s, _ in rounds])}")
    print(f"  wall                {per_store([w for _, _, w in rounds])}")
    if profiler and arguments.profile:
        profiler.dump_stats(arguments.profile)
        print(f"profile: {arguments.profile}")


if __name__ == "__main__":
    main()
