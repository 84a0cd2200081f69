"""DICOM JSON answers longer than one streamed chunk (64 KiB) are still one valid JSON array
(PS3.18 F.2): QIDO-RS results and WADO-RS metadata of a study of 150 instances, on SQLite
and PostgreSQL. (Every chunk after the first once lost the comma before its first object.)
"""

from __future__ import annotations

from pathlib import Path

from pacs.services.context import Services
from tests.factory import make_dataset
from tests.integration.find_support import store_all
from tests.web.support import Faces, module_faces

COUNT = 150


def populate(services: Services, folder: Path) -> None:
    store_all(services, folder, (make_dataset(patient_id="P-JSON", study="JSON", instance=n,
                                              rows=4, columns=4) for n in range(1, COUNT + 1)))


faces = module_faces(populate)
STUDY = make_dataset(patient_id="P-JSON", study="JSON").StudyInstanceUID


# PS3.18 10.6.3.3 / F.2: every match of a long search, in one array.
def test_a_long_search_answer_is_one_json_array(faces: Faces) -> None:
    response = faces.get(f"studies/{STUDY}/instances", params={"includefield": "all"})
    assert len(response.content) > 64 * 1024
    assert len(response.json()) == COUNT


# PS3.18 10.4.1.1.4 / F.2: the metadata of every instance of a study, in one array.
def test_long_study_metadata_is_one_json_array(faces: Faces) -> None:
    response = faces.get(f"studies/{STUDY}/metadata")
    assert len(response.content) > 64 * 1024
    documents = response.json()
    assert len(documents) == COUNT
    assert len({d["00080018"]["Value"][0] for d in documents}) == COUNT
