"""A throwaway PostgreSQL server for the test session, on the benchmark's temporary cluster.

What tests add: skip with a clear reason on a laptop without the server binaries, fail under
CI=true, fsync off for speed, and one empty database per test.
"""

from __future__ import annotations

import pytest

from pacs.bench.pgtemp import Databases, TemporaryCluster, server_binaries
from pacs.bench.procs import free_port
from tests.dcmtk import IN_CI

__all__ = ["PostgresServer", "free_port"]


class PostgresServer:
    """A PostgreSQL cluster in a temp folder, listening on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        if server_binaries() is None:
            message = ("PostgreSQL server binaries (initdb, pg_ctl) are not installed "
                       "(apt-get install postgresql; scripts/test does it)")
            if IN_CI:
                pytest.fail(message + " - under CI=true this is an error, not a skip")
            pytest.skip(message)
        self.cluster = TemporaryCluster(durable=False)
        self.port = self.cluster.port
        self.databases = Databases(self.cluster.url)

    def new_database(self) -> str:
        """Create an empty database and return its URL."""
        return self.databases.new()

    def stop(self) -> None:
        """Stop the server and remove its folder."""
        self.cluster.stop()
