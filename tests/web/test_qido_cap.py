"""QIDO-RS over `query.max_results` (PS3.18 10.6.3.2): at most the cap comes back, with a
`Warning: 299` header exactly when more matched, on SQLite and PostgreSQL, for a cap below
and above the number of matches the server reads ahead before answering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pacs.services.context import Services
from tests.conftest import BACKENDS
from tests.factory import make_dataset
from tests.integration.find_support import bulk_index
from tests.web.support import Faces, start_faces, stop_faces

STUDIES = 130


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/index.sqlite"
    return str(request.getfixturevalue("postgres_server").new_database())


@pytest.fixture
def capped(tmp_path: Path, database: str) -> Iterator[Callable[[int], Faces]]:
    """Start a server holding STUDIES studies (index rows only) with a given cap."""
    started: list[Faces] = []

    def start(cap: int) -> Faces:
        def populate(services: Services, _folder: Path) -> None:
            bulk_index(services, (make_dataset(patient_id=f"CAP{n % 7}", study=f"C{n}")
                                  for n in range(STUDIES)))

        faces = start_faces(tmp_path / str(len(started)), database, populate,
                            max_find_results=cap)
        started.append(faces)
        return faces

    yield start
    for faces in started:
        stop_faces(faces)


# PS3.18 10.6.3.2: more matches than the server returns: the first `cap` and Warning 299.
@pytest.mark.parametrize("cap", [5, 120])
def test_more_matches_than_the_cap_come_back_capped_with_a_warning(
        capped: Callable[[int], Faces], cap: int) -> None:
    faces = capped(cap)
    response = faces.get("studies")
    assert response.status_code == 200
    assert len(response.json()) == cap
    assert response.headers["warning"].startswith("299 ")


# As many matches as the cap (or fewer): all of them, no warning.
@pytest.mark.parametrize("cap", [STUDIES, 200])
def test_matches_within_the_cap_come_back_without_a_warning(
        capped: Callable[[int], Faces], cap: int) -> None:
    faces = capped(cap)
    response = faces.get("studies")
    assert len(response.json()) == STUDIES
    assert "warning" not in response.headers
    assert len(faces.get("studies", params={"PatientID": "CAP1"}).json()) == 19


# PS3.18 8.3.4.4: a client that pages with `limit` is not warned; a limit above the cap is.
def test_limit_pages_without_a_warning_and_is_held_to_the_cap(
        capped: Callable[[int], Faces]) -> None:
    faces = capped(120)
    paged = faces.get("studies", params={"limit": 50, "offset": 100})
    assert len(paged.json()) == 30 and "warning" not in paged.headers
    over = faces.get("studies", params={"limit": 125})
    assert len(over.json()) == 120 and over.headers["warning"].startswith("299 ")
