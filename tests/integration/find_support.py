"""Shared by the C-FIND suites (no tests here): data sets, module servers, client helpers.

Each test_find_* module builds one server per backend (module scope) over a data set made
here through the real store pipeline, then queries it with pynetdicom's SCU or DCMTK.
Expected results name studies by Study ID, series by Series Description, instances by
Instance Number, so a failing assertion reads as the data set does.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pynetdicom import AE
from pynetdicom.pdu_primitives import SOPClassExtendedNegotiation

from pacs.dimse.server import RunningServer, start_server
from pacs.index.schema import Instance, Patient, Series, Study
from pacs.model.dictionary import IMAGE, PATIENT, SERIES, STUDY, stored_attributes
from pacs.model.levels import PATIENT_ROOT_FIND, STUDY_ROOT_FIND
from pacs.services.context import Services, open_services
from pacs.services.store import column_values
from tests.conftest import BACKENDS
from tests.conftest import test_settings as settings_for
from tests.dcmtk import run_tool
from tests.factory import MR_IMAGE_STORAGE, SECONDARY_CAPTURE, code_sequence, make_dataset, uid

BASIC_TEXT_SR = "1.2.840.10008.5.1.4.1.1.88.11"
MODELS = {"P": PATIENT_ROOT_FIND, "S": STUDY_ROOT_FIND}


def referenced(*instance_uids: str) -> Sequence:
    """A Referenced Study/Patient Sequence with one item per referenced instance."""
    items = []
    for instance in instance_uids:
        item = Dataset()
        item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        item.ReferencedSOPInstanceUID = instance
        items.append(item)
    return Sequence(items)


def specimen(identifier: str, specimen_uid: str) -> Sequence:
    """A one-item Specimen Description Sequence."""
    item = Dataset()
    item.SpecimenIdentifier = identifier
    item.SpecimenUID = specimen_uid
    return Sequence([item])


def study_uid(patient_id: str, study: str) -> str:
    """The Study Instance UID tests.factory gives a (patient, study label)."""
    return uid(patient_id, study)


def series_uid(patient_id: str, study: str, series: str) -> str:
    """The Series Instance UID tests.factory gives a (patient, study, series label)."""
    return uid(patient_id, study, series)


# --- the core data set: every matching rule has entities that must and must not match ------

def _study(patient_id: str, patient_name: str, study: str, **attributes: Any) -> dict[str, Any]:
    base = {"patient_id": patient_id, "patient_name": patient_name, "study": study,
            "StudyID": study, "AccessionNumber": f"ACC-{study}",
            "ProcedureCodeSequence": code_sequence(f"P-{study}", "99LOCAL", "Procedure"),
            "ReferencedStudySequence": referenced(f"1.2.3.4.{len(study)}"),
            "ReferencedPatientSequence": referenced(f"1.2.3.5.{len(patient_id)}"),
            "OtherPatientNames": [f"Alias^{patient_id}"], "PatientComments": "none",
            "NameOfPhysiciansReadingStudy": ["Reader^Default"]}
    base.update(attributes)
    return base


CORE_STUDIES: list[dict[str, Any]] = [
    _study("PAT-DOE", "Doe^John", "DOE1", StudyDate="20240102", StudyTime="101500",
           StudyDescription="CT Chest", TimezoneOffsetFromUTC="+0000",
           ReferringPhysicianName="Ref^Doctor",
           NameOfPhysiciansReadingStudy=["Reader^One", "Reader^Two"],
           OtherPatientNames=["Doe^J", "Johnny^Doe"],
           ProcedureCodeSequence=code_sequence("CT-CHEST", "99LOCAL", "CT of the chest"),
           ReferencedStudySequence=referenced("1.2.3.4.100", "1.2.3.4.101")),
    _study("PAT-DOE", "Doe^John", "DOE2", StudyDate="20240315", StudyTime="083000",
           StudyDescription="MR Knee", OtherPatientNames=["Doe^J", "Johnny^Doe"]),
    _study("PAT-JANE", "doe^jane", "JANE1", StudyDate="20231231", StudyTime="235900",
           StudyDescription="US Abdomen", AccessionNumber="ACCX1YZ"),
    _study("PAT-MUE", "Müller^Jürgen", "MUE1", StudyDate="20240102", StudyTime="141500.123456",
           StudyDescription="Schädel", ReferringPhysicianName="Dvořák^Antonín",
           ReferencedStudySequence=referenced("1.2.3.4.200")),
    _study("PAT-INJ%_", "O'Brien^Pat", "INJ1", StudyDate="20240201", StudyTime="120000",
           StudyDescription="100%_sure [x]", AccessionNumber="ACC_1%",
           PatientComments="C:\\temp\\file 50%"),
    _study("PAT-DROP", "Robert'); DROP TABLE patient;--", "DROP1", StudyDate="20240202",
           StudyTime="120000", StudyDescription="x' OR '1'='1"),
]
# (study label, series label, modality, SOP class, instance numbers, per-instance attributes)
CORE_SERIES: list[tuple[str, str, str, str, tuple[int, ...], dict[int, dict[str, Any]]]] = [
    ("DOE1", "DOE1-CT", "CT", "1.2.840.10008.5.1.4.1.1.2", (1, 2), {
        1: {"ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            "AcquisitionDateTime": "20240102101500.25",
            "AnatomicRegionSequence": code_sequence("T-D3000", "SRT", "Chest"),
            "RelatedGeneralSOPClassUID": "1.2.840.10008.5.1.4.1.1.2.1"},
        2: {"ImageType": ["DERIVED", "SECONDARY", "LOCALIZER"],
            "AcquisitionDateTime": "20240102101530.75",
            "AnatomicRegionSequence": Sequence([
                *code_sequence("T-D3000", "SRT", "Chest"),
                *code_sequence("T-D4000", "SRT", "Abdomen")]),
            "RelatedGeneralSOPClassUID": "1.2.3.9"}}),
    ("DOE1", "DOE1-SR", "SR", BASIC_TEXT_SR, (1,), {
        1: {"ConceptNameCodeSequence": code_sequence("11528-7", "LN", "Radiology Report"),
            "ImageType": ["DERIVED", "PRIMARY"],
            "SpecimenDescriptionSequence": specimen("SPEC-1", "1.2.3.77")}}),
    ("DOE2", "DOE2-MR", "MR", MR_IMAGE_STORAGE, (1,), {}),
    ("JANE1", "JANE1-US", "US", SECONDARY_CAPTURE, (1,), {}),
    ("MUE1", "MUE1-CT", "CT", "1.2.840.10008.5.1.4.1.1.2", (1,), {}),
    ("INJ1", "INJ1-CT", "CT", "1.2.840.10008.5.1.4.1.1.2", (1,), {}),
    ("DROP1", "DROP1-OT", "OT", SECONDARY_CAPTURE, (1,), {}),
]
STUDY_BY_LABEL = {study["study"]: study for study in CORE_STUDIES}


def core_datasets() -> Iterator[Dataset]:
    """The instances of the core data set."""
    for position, (study_label, series_label, modality, sop_class, numbers, extra) in \
            enumerate(CORE_SERIES, start=1):
        study = STUDY_BY_LABEL[study_label]
        for number in numbers:
            yield make_dataset(series=series_label, instance=number, modality=modality,
                               sop_class=sop_class, SeriesDescription=series_label,
                               SeriesNumber=position, **study, **extra.get(number, {}))


def store_all(services: Services, folder: Path, datasets: Iterator[Dataset]) -> None:
    """Store each data set through the C-STORE pipeline (file, then index)."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, dataset in enumerate(datasets):
        path = folder / f"{number}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        services.ingestor.store(path)


def populate_core(services: Services, folder: Path) -> None:
    """The core data set, stored through the pipeline."""
    store_all(services, folder, core_datasets())


def bulk_index(services: Services, datasets: Iterator[Dataset]) -> int:
    """Index data sets without files, in one transaction (for large result sets)."""
    count = 0
    with services.index.write_transaction():
        ids: dict[tuple[str, str], int] = {}
        for dataset in datasets:
            values = {level: column_values(dataset, stored_attributes(level))
                      for level in (PATIENT, STUDY, SERIES, IMAGE)}
            patient = ids.get(("p", dataset.PatientID))
            if patient is None:
                patient = ids[("p", dataset.PatientID)] = Patient.insert(
                    values[PATIENT]).execute()
            study = ids.get(("s", dataset.StudyInstanceUID))
            if study is None:
                study = ids[("s", dataset.StudyInstanceUID)] = Study.insert(
                    {**values[STUDY], "patient": patient}).execute()
            series = ids.get(("e", dataset.SeriesInstanceUID))
            if series is None:
                series = ids[("e", dataset.SeriesInstanceUID)] = Series.insert(
                    {**values[SERIES], "study": study}).execute()
            Instance.insert({**values[IMAGE], "series": series, "file_path": "none",
                             "transfer_syntax_uid": "1.2.840.10008.1.2.1", "file_size": 0,
                             "file_sha256": "", "received_at": datetime.now(UTC)}).execute()
            count += 1
    return count


def module_server(populate: Callable[[Services, Path], None]) -> Any:
    """A module-scoped fixture: one populated server per backend, stopped after the module."""

    @pytest.fixture(scope="module", params=BACKENDS)
    def fixture(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
        folder = tmp_path_factory.mktemp("find")
        if request.param == "sqlite":
            url = f"sqlite:///{folder}/index.sqlite"
        else:
            url = request.getfixturevalue("postgres_server").new_database()
        services = open_services(settings_for(folder / "archive", url))
        populate(services, folder / "in")
        running = start_server(services)
        yield running
        running.stop(grace=2)
        services.close()

    return fixture


@contextmanager
def strict_hierarchy(server: RunningServer) -> Iterator[RunningServer]:
    """The running server with `query.strict_hierarchy = true` while the block runs."""
    services = server.services
    before = services.settings
    services.settings = replace(before, strict_hierarchy=True)
    try:
        yield server
    finally:
        services.settings = before


# --- the client side --------------------------------------------------------------------

def query(**keys: Any) -> Dataset:
    """A request identifier from keyword=value pairs ("" asks for the value)."""
    dataset = Dataset()
    for keyword, value in keys.items():
        setattr(dataset, keyword, value)
    return dataset


@dataclass
class FindResult:
    """Every response of one C-FIND: pending identifiers and the final status."""

    pending: list[tuple[int, Dataset]] = field(default_factory=list)
    final: Dataset | None = None
    accepted_info: bytes | None = None

    @property
    def status(self) -> int:
        """The final status."""
        assert self.final is not None
        return int(self.final.Status)

    @property
    def identifiers(self) -> list[Dataset]:
        """The identifiers of the pending responses."""
        return [identifier for _, identifier in self.pending]

    def values(self, keyword: str) -> list[Any]:
        """The value of `keyword` in each response, sorted (PN as text)."""
        return sorted(str(getattr(identifier, keyword)) for identifier in self.identifiers)


def find(server: RunningServer, identifier: Dataset, model: str = "S",
         ext_neg: bytes | None = None, cancel_after: int | None = None) -> FindResult:
    """One C-FIND on its own association, with optional SOP Class Extended Negotiation."""
    sop_class = MODELS[model]
    ae = AE(ae_title="FINDSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(sop_class)
    items = []
    if ext_neg is not None:
        item = SOPClassExtendedNegotiation()
        item.sop_class_uid = sop_class
        item.service_class_application_information = ext_neg
        items.append(item)
    host, port = server.address
    association = ae.associate(host, port, ae_title="MINIPACS", ext_neg=items or None)
    assert association.is_established
    result = FindResult(accepted_info=association.acceptor.sop_class_extended.get(sop_class))
    try:
        context = association.accepted_contexts[0].context_id
        for status, answer in association.send_c_find(identifier, sop_class, msg_id=7):
            assert status is not None, "no response (DIMSE timeout)"
            if status.Status in (0xFF00, 0xFF01):
                result.pending.append((int(status.Status), answer))
                if cancel_after is not None and len(result.pending) == cancel_after:
                    association.send_c_cancel(7, context)
            else:
                result.final = status
    finally:
        association.release()
    return result


@dataclass
class FindscuResult:
    """What findscu received: the final status line and each Pending identifier."""

    final: str
    identifiers: list[Dataset]

    def values(self, keyword: str) -> list[str]:
        """The value of `keyword` in each response, sorted."""
        return sorted(str(getattr(identifier, keyword)) for identifier in self.identifiers)


def findscu(server: RunningServer, folder: Path, model: str, *keys: str,
            extra: tuple[str, ...] = ()) -> FindscuResult:
    """Run findscu -P or -S with -k keys; responses land in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    host, port = server.address
    arguments = ["-v", "-aec", "MINIPACS", host, str(port), f"-{model}", "-X", "-od",
                 str(folder), *extra]
    for key in keys:
        arguments += ["-k", key]
    result = run_tool("findscu", arguments, check=True)
    output = result.stdout + result.stderr
    final = re.search(r"Received Final Find Response \(([^)]*)\)", output)
    assert final is not None, output
    files = sorted(folder.glob("rsp*.dcm"))
    return FindscuResult(final.group(1), [pydicom.dcmread(path) for path in files])
