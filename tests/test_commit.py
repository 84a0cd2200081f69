"""Group commit (services/commit.py): stores committed together keep their own outcomes.

Threads stand in for associations and start together on a barrier, so their commits may share
a transaction or not; every assertion holds whichever way the batches form.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pacs.index.records import AddResult, IndexEntry, IndexUnavailable
from pacs.index.schema import Instance
from pacs.services.context import Services
from pacs.services.store import index_entry
from tests.factory import make_dataset, write_dataset


def _placed_entry(services: Services, tmp_path: Path, **attributes: Any) -> IndexEntry:
    """A file renamed into the archive (folder not yet synced) and its entry, as ingest
    hands them to the group commit."""
    dataset = make_dataset(**attributes)
    path = write_dataset(dataset, tmp_path / "in" / str(attributes.get("instance", 1)))
    relative = services.archive.relative_path_for(
        dataset.StudyInstanceUID, dataset.SeriesInstanceUID, dataset.SOPInstanceUID)
    stored = services.archive.place(path, relative, sync_folder=False)
    return index_entry(dataset, str(dataset.file_meta.TransferSyntaxUID), stored, "TEST")


def _commit_together(services: Services, entries: list[IndexEntry]
                     ) -> list[AddResult | Exception]:
    """Commit each entry from its own thread, all released at once; each thread's outcome."""
    outcomes: list[AddResult | Exception] = [IndexUnavailable("not run")] * len(entries)
    start = threading.Barrier(len(entries))

    def commit(number: int) -> None:
        start.wait()
        try:
            outcomes[number] = services.ingestor.committer.commit(entries[number])
        except Exception as error:  # noqa: BLE001 - the outcome under test
            outcomes[number] = error
        finally:
            services.index.release_connection()

    threads = [threading.Thread(target=commit, args=(n,)) for n in range(len(entries))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


@pytest.fixture
def services(services_factory: Callable[..., Services], database_url: str) -> Services:
    """Services on each backend in turn (the group commit's writer differs per backend)."""
    return services_factory(database_url)


def test_concurrent_stores_are_each_indexed_once(services: Services, tmp_path: Path) -> None:
    entries = [_placed_entry(services, tmp_path, instance=n, series=f"SE{n % 2}")
               for n in range(8)]
    outcomes = _commit_together(services, entries)
    assert [o.outcome for o in outcomes if isinstance(o, AddResult)] == ["inserted"] * 8
    assert Instance.select().count() == 8
    stats = services.ingestor.committer.stats
    assert stats.stores == 8 and 1 <= stats.commits <= 8


# DESIGN rule 2: an entry the index refuses fails alone; the others it was grouped with are
# committed and answered Success.
def test_an_entry_the_index_refuses_fails_alone(services: Services, tmp_path: Path) -> None:
    entries = [_placed_entry(services, tmp_path, instance=n) for n in range(5)]
    entries[2].instance["no_such_column"] = "x"  # what no index row can hold
    outcomes = _commit_together(services, entries)
    assert isinstance(outcomes[2], IndexUnavailable)
    assert all(isinstance(o, AddResult) and o.outcome == "inserted"
               for n, o in enumerate(outcomes) if n != 2)
    assert Instance.select().count() == 4


# PS3.4 B.4.1 / DESIGN "C-STORE of an instance already held": the same instance committed
# twice at once yields one row; the second is told it was kept.
def test_the_same_instance_committed_twice_at_once_is_kept_once(
    services: Services, tmp_path: Path
) -> None:
    entries = [_placed_entry(services, tmp_path, instance=7) for _ in range(2)]
    outcomes = _commit_together(services, entries)
    assert sorted(o.outcome for o in outcomes if isinstance(o, AddResult)) == [
        "inserted", "kept"]
    assert Instance.select().count() == 1


def test_a_folder_that_cannot_be_synced_fails_the_commit(
    services: Services, tmp_path: Path
) -> None:
    entry = _placed_entry(services, tmp_path)
    services.archive.remove(entry.file_path)
    folder = services.archive.absolute(entry.file_path).parent
    folder.rmdir()
    with pytest.raises(OSError):
        services.ingestor.committer.commit(entry)
    assert Instance.select().count() == 0
