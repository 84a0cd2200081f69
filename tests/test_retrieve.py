"""The retrieve domain without a network: identifier validation, destinations, counts and final
status, presentation-context planning, reading stored files and converting them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from pacs.config import RemoteAE, Settings
from pacs.index.records import InstanceRecord
from pacs.model.levels import PATIENT_ROOT, STUDY_ROOT
from pacs.model.retrieve_identifier import RetrieveRequest, parse_retrieve_identifier
from pacs.model.status import DicomError, RetrieveStatus
from pacs.services.context import Services
from pacs.services.retrieve import (
    AcceptedContext,
    ContextProposal,
    ConversionError,
    Delivery,
    InstanceUnavailable,
    Outcome,
    Retrieval,
    choose_context,
    convert,
    failed_uid_list,
    find_instances,
    plan_associations,
    read_instance,
    resolve_destination,
    store_outcome,
)
from tests.factory import CT_IMAGE_STORAGE, MR_IMAGE_STORAGE, make_dataset, write_dataset

A, B, C = "1.2.3.1", "1.2.3.2", "1.2.3.3"


def _identifier(level: str | None, **keys: Any) -> Dataset:
    dataset = Dataset()
    if level is not None:
        dataset.QueryRetrieveLevel = level
    for keyword, value in keys.items():
        setattr(dataset, keyword, value)
    return dataset


def _refusal(identifier: Dataset, model: Any = STUDY_ROOT,
             strict: bool = False) -> tuple[int, int | None]:
    with pytest.raises(DicomError) as caught:
        parse_retrieve_identifier(identifier, model, strict)
    return int(caught.value.status), caught.value.offending_element


# --- identifier (PS3.4 C.4.2.2.1, C.2.2.2.2) ----------------------------------------------------

# C.2.2.2.2: the retrieve level's unique key may be a list of UIDs; duplicates collapse.
def test_identifier_study_level_takes_a_list_of_uids() -> None:
    request = parse_retrieve_identifier(_identifier("STUDY", StudyInstanceUID=[A, B, A]),
                                        STUDY_ROOT)
    assert request == RetrieveRequest("STUDY", study_uids=(A, B))


# C.4.2.2.1: unique keys above the level narrow the set when given (single values).
def test_identifier_image_level_keeps_keys_above() -> None:
    identifier = _identifier("IMAGE", PatientID="P1", StudyInstanceUID=A,
                             SeriesInstanceUID=B, SOPInstanceUID=[C])
    assert parse_retrieve_identifier(identifier, PATIENT_ROOT) == RetrieveRequest(
        "IMAGE", patient_ids=("P1",), study_uids=(A,), series_uids=(B,),
        sop_instance_uids=(C,))


# C.6.1: PATIENT level exists in Patient Root only; Patient ID is its key.
def test_identifier_patient_level_in_patient_root() -> None:
    assert parse_retrieve_identifier(_identifier("PATIENT", PatientID="P1"),
                                     PATIENT_ROOT) == RetrieveRequest("PATIENT", ("P1",))


# Zero-length keys below the level carry no value and are ignored.
def test_identifier_empty_key_below_the_level_is_ignored() -> None:
    identifier = _identifier("STUDY", StudyInstanceUID=A, SeriesInstanceUID="")
    assert parse_retrieve_identifier(identifier, STUDY_ROOT).study_uids == (A,)


IDENTIFIER_ERRORS = pytest.mark.parametrize("identifier, model, offending", [
    (_identifier(None, StudyInstanceUID=A), STUDY_ROOT, 0x00080052),
    (_identifier("PATIENT", PatientID="P1"), STUDY_ROOT, 0x00080052),
    (_identifier("FRAME", StudyInstanceUID=A), STUDY_ROOT, 0x00080052),
    (_identifier("STUDY"), STUDY_ROOT, 0x0020000D),
    (_identifier("STUDY", StudyInstanceUID=""), STUDY_ROOT, 0x0020000D),
    (_identifier("IMAGE", SeriesInstanceUID=A), STUDY_ROOT, 0x00080018),
    (_identifier("STUDY", StudyInstanceUID="1.02.3"), STUDY_ROOT, 0x0020000D),
    (_identifier("STUDY", StudyInstanceUID="1.2.*"), STUDY_ROOT, 0x0020000D),
    (_identifier("SERIES", StudyInstanceUID=[A, B], SeriesInstanceUID=C), STUDY_ROOT,
     0x0020000D),
    (_identifier("STUDY", PatientID=["P1", "P2"], StudyInstanceUID=A), PATIENT_ROOT,
     0x00100020),
    (_identifier("PATIENT", PatientID=["P1", "P2"]), PATIENT_ROOT, 0x00100020),
    (_identifier("SERIES", SeriesInstanceUID=A, SOPInstanceUID=B), STUDY_ROOT, 0x00080018),
], ids=["no-level", "patient-in-study-root", "unknown-level", "no-key", "empty-key",
        "no-image-key", "bad-uid", "wildcard-uid", "list-above", "patient-list-above",
        "patient-list", "key-below"])
# Refused only with query.strict_hierarchy = true (issue #11): answered as dcmqrscp and
# Orthanc answer them otherwise.
STRICT_ONLY = ("list-above", "key-below")


# C.4.2.2.1 with query.strict_hierarchy = true: every identifier error is 0xA900.
@IDENTIFIER_ERRORS
def test_identifier_error_is_a900_with_offending_element(identifier: Dataset, model: Any,
                                                         offending: int) -> None:
    assert _refusal(identifier, model, strict=True) == (0xA900, offending)


# Issue #11: without a strict hierarchy the same errors are refused, but for STRICT_ONLY.
@IDENTIFIER_ERRORS
def test_identifier_error_is_a900_without_strict_hierarchy(
        identifier: Dataset, model: Any, offending: int, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.id in STRICT_ONLY:
        parse_retrieve_identifier(identifier, model)
    else:
        assert _refusal(identifier, model) == (0xA900, offending)


# Issue #11, C.2.2.2.2: without a strict hierarchy a list of Study Instance UIDs above the
# level narrows the set to any of them, as dcmqrscp and Orthanc read it.
def test_identifier_list_of_uids_above_narrows_to_any_of_them() -> None:
    identifier = _identifier("SERIES", StudyInstanceUID=[A, B, A], SeriesInstanceUID=C)
    assert parse_retrieve_identifier(identifier, STUDY_ROOT) == RetrieveRequest(
        "SERIES", study_uids=(A, B), series_uids=(C,))


# Issue #11, C.4.2.2.1: without a strict hierarchy a key below the level is ignored (the
# level says what is retrieved, as dcmqrscp and Orthanc retrieve it) and named in the log.
def test_identifier_key_below_is_ignored_and_named() -> None:
    identifier = _identifier("STUDY", StudyInstanceUID=A, SeriesInstanceUID=B,
                             SOPInstanceUID=C)
    request = parse_retrieve_identifier(identifier, STUDY_ROOT)
    assert request == RetrieveRequest("STUDY", study_uids=(A,),
                                      ignored=("SeriesInstanceUID", "SOPInstanceUID"))
    assert request.describe() == f"STUDY study={A} ignored=SeriesInstanceUID,SOPInstanceUID"


# --- destinations -------------------------------------------------------------------------------

SETTINGS = Settings(remotes=(RemoteAE("VIEWER", "192.0.2.1", 104),))


# Issue #4: the AE table names the destination.
def test_destination_from_the_ae_table() -> None:
    [endpoint] = resolve_destination(SETTINGS, "VIEWER", "CALLER", "198.51.100.7")
    assert (endpoint.host, endpoint.port) == ("192.0.2.1", 104)


# PS3.4 C.4.2.1.5: an AE the table does not know is 0xA801 (reply_to_requester off).
def test_destination_unknown_is_a801() -> None:
    with pytest.raises(DicomError) as caught:
        resolve_destination(SETTINGS, "CALLER", "CALLER", "198.51.100.7")
    assert caught.value.status == RetrieveStatus.MOVE_DESTINATION_UNKNOWN


# reply_to_requester: the calling AE itself, at its own address, on each allow-listed port.
def test_destination_reply_to_requester_uses_the_callers_address_and_listed_ports() -> None:
    settings = replace(SETTINGS, reply_to_requester=True, reply_ports=(11113, 104))
    endpoints = resolve_destination(settings, "CALLER", "CALLER", "198.51.100.7")
    assert [(e.host, e.port) for e in endpoints] == [("198.51.100.7", 11113),
                                                     ("198.51.100.7", 104)]


# reply_to_requester never sends to a third AE, and never without an allow-listed port.
@pytest.mark.parametrize("destination, ports", [("OTHER", (104,)), ("CALLER", ())])
def test_destination_reply_to_requester_is_limited(destination: str,
                                                   ports: tuple[int, ...]) -> None:
    settings = replace(SETTINGS, reply_to_requester=True, reply_ports=ports)
    with pytest.raises(DicomError):
        resolve_destination(settings, destination, "CALLER", "198.51.100.7")


# --- counts and final status (PS3.4 C.4.2.1.5, C.4.2.3.1) -----------------------------------

def _record(n: int, sop_class: str = CT_IMAGE_STORAGE,
            syntax: str = ExplicitVRLittleEndian) -> InstanceRecord:
    return InstanceRecord(f"1.2.9.{n}", sop_class, syntax, f"x/{n}.dcm", 1, "", "1.2.8",
                          "1.2.7", "P")


def _retrieval(*outcomes: Outcome, total: int | None = None) -> Retrieval:
    retrieval = Retrieval([_record(n) for n in range(total or len(outcomes))])
    for record, outcome in zip(retrieval.instances, outcomes, strict=False):
        retrieval.record(record, outcome)
    return retrieval


@pytest.mark.parametrize("outcomes, status", [
    ((), 0x0000),
    ((Outcome.COMPLETED, Outcome.COMPLETED), 0x0000),
    ((Outcome.COMPLETED, Outcome.WARNING), 0xB000),
    ((Outcome.COMPLETED, Outcome.FAILED), 0xB000),
    ((Outcome.FAILED, Outcome.FAILED), 0xA702),
], ids=["nothing", "all-sent", "a-warning", "some-failed", "all-failed"])
def test_final_status(outcomes: tuple[Outcome, ...], status: int) -> None:
    assert _retrieval(*outcomes).final_status() == status


# C.4.2.3.1: the counts add up to the total at every step; failures are listed by UID.
def test_counts_add_up_and_failures_are_listed() -> None:
    retrieval = _retrieval(Outcome.COMPLETED, Outcome.FAILED, Outcome.WARNING, total=5)
    counts = retrieval.counts()
    assert (counts.remaining, counts.completed, counts.failed, counts.warning) == (2, 1, 1, 1)
    assert retrieval.failed_uids == ["1.2.9.1"]
    assert retrieval.final_status(cancelled=True) == RetrieveStatus.CANCEL


@pytest.mark.parametrize("status, decompressed, outcome", [
    (0x0000, False, Outcome.COMPLETED), (0x0000, True, Outcome.WARNING),
    (0xB007, False, Outcome.WARNING), (0xA700, False, Outcome.FAILED),
    (0xC000, True, Outcome.FAILED), (None, False, Outcome.FAILED),
])
def test_store_outcome(status: int | None, decompressed: bool, outcome: Outcome) -> None:
    assert store_outcome(status, decompressed) is outcome


# A UI list in explicit VR has a 16-bit length: the list is cut to fit, implicit VR keeps all.
def test_failed_uid_list_fits_explicit_vr() -> None:
    uids = [f"1.2.826.0.1.3680043.10.1071.{n:030d}" for n in range(2000)]
    kept = failed_uid_list(uids, explicit_vr=True)
    assert len("\\".join(kept)) <= 0xFFFE < len("\\".join(kept + [uids[len(kept)]]))
    assert failed_uid_list(uids, explicit_vr=False) == uids


# Number of ... Sub-operations is US: more than 65535 instances cannot be counted (0xA701).
def test_more_instances_than_a_count_can_hold_is_a701() -> None:
    class Many:
        def instances_for_retrieve(self, *args: Any) -> list[InstanceRecord]:
            return [_record(0)] * 65536

    with pytest.raises(DicomError) as caught:
        find_instances(Many(), RetrieveRequest("STUDY", study_uids=(A,)))  # type: ignore[arg-type]
    assert caught.value.status == RetrieveStatus.OUT_OF_RESOURCES_MATCHES


# --- presentation contexts ----------------------------------------------------------------------

# Issue #4: contexts from the pairs in the set, each stored syntax alone, then the uncompressed
# fallback syntaxes not already proposed.
def test_plan_proposes_stored_syntaxes_then_the_uncompressed_fallback() -> None:
    instances = [_record(1, CT_IMAGE_STORAGE, JPEG2000Lossless),
                 _record(2, CT_IMAGE_STORAGE, ExplicitVRLittleEndian),
                 _record(3, MR_IMAGE_STORAGE, ImplicitVRLittleEndian)]
    [plan] = plan_associations(instances)
    assert plan.contexts == [
        ContextProposal(CT_IMAGE_STORAGE, (JPEG2000Lossless,)),
        ContextProposal(CT_IMAGE_STORAGE, (ExplicitVRLittleEndian,)),
        ContextProposal(CT_IMAGE_STORAGE, (ImplicitVRLittleEndian,)),
        ContextProposal(MR_IMAGE_STORAGE, (ImplicitVRLittleEndian,)),
    ]
    assert plan.instances == instances


# PS3.8 9.3.2.2: at most 128 contexts per association; a class never spans two.
def test_plan_splits_more_than_128_contexts_by_sop_class() -> None:
    instances = [_record(n, f"1.2.840.10008.5.1.4.1.1.{900 + n}", syntax)
                 for n in range(70) for syntax in (ExplicitVRLittleEndian, JPEG2000Lossless)]
    plans = plan_associations(instances)
    assert [len(plan.contexts) for plan in plans] == [126, 84]
    assert sum(len(plan.instances) for plan in plans) == 140
    for plan in plans:
        classes = {proposal.sop_class_uid for proposal in plan.contexts}
        assert {record.sop_class_uid for record in plan.instances} == classes


def test_plan_of_nothing_is_no_association() -> None:
    assert plan_associations([]) == []


def test_choose_context_prefers_the_stored_syntax_then_explicit_then_implicit() -> None:
    implicit = AcceptedContext(1, CT_IMAGE_STORAGE, ImplicitVRLittleEndian)
    explicit = AcceptedContext(3, CT_IMAGE_STORAGE, ExplicitVRLittleEndian)
    j2k = AcceptedContext(5, CT_IMAGE_STORAGE, JPEG2000Lossless)
    other = AcceptedContext(7, MR_IMAGE_STORAGE, JPEG2000Lossless)
    accepted = [implicit, explicit, j2k, other]
    assert choose_context(CT_IMAGE_STORAGE, JPEG2000Lossless, accepted) == Delivery(j2k, False)
    assert choose_context(CT_IMAGE_STORAGE, RLELossless, accepted) == Delivery(explicit, True)
    assert choose_context(CT_IMAGE_STORAGE, RLELossless, [implicit]) == Delivery(implicit, True)
    assert choose_context(MR_IMAGE_STORAGE, RLELossless, [other]) is None


# --- reading and converting ---------------------------------------------------------------------

def _stored(services: Services, tmp_path: Path, dataset: Dataset) -> InstanceRecord:
    result = services.ingestor.store(write_dataset(dataset, tmp_path / "in"))
    record = services.index.get_instance(result.sop_instance_uid)
    assert record is not None
    return record


def test_read_instance_gives_the_stored_data_set(services: Services, tmp_path: Path) -> None:
    record = _stored(services, tmp_path, make_dataset())
    stored = read_instance(services.archive, record)
    path = services.archive.absolute(record.file_path)
    assert stored.content == path.read_bytes()
    assert pydicom.dcmread(path).SOPInstanceUID == record.sop_instance_uid
    assert stored.transfer_syntax_uid == ExplicitVRLittleEndian


# DESIGN rule 7: a missing, truncated or altered file is unavailable (a failed sub-operation).
@pytest.mark.parametrize("damage", ["delete", "truncate", "alter"])
def test_read_instance_refuses_a_damaged_file(damage: str, services: Services,
                                              tmp_path: Path) -> None:
    record = _stored(services, tmp_path, make_dataset())
    path = services.archive.absolute(record.file_path)
    content = path.read_bytes()
    if damage == "delete":
        path.unlink()
    elif damage == "truncate":
        path.write_bytes(content[:-10])
    else:
        path.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(InstanceUnavailable):
        read_instance(services.archive, record)


def _pixel_dataset(**kwargs: Any) -> Dataset:
    return make_dataset(BitsStored=16, HighBit=15, **kwargs)


@pytest.mark.parametrize("target", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_convert_decompresses_to_the_accepted_syntax(target: str, services: Services,
                                                      tmp_path: Path) -> None:
    original = _pixel_dataset()
    compressed = _pixel_dataset()
    compressed.compress(RLELossless, generate_instance_uid=False)
    stored = read_instance(services.archive, _stored(services, tmp_path, compressed))
    converted = convert(stored, target)
    assert converted.decompressed
    decoded = pydicom.filereader.read_dataset(
        pydicom.filebase.DicomBytesIO(converted.data_set),
        is_implicit_VR=target == ImplicitVRLittleEndian, is_little_endian=True)
    assert decoded.PixelData == original.PixelData
    assert decoded.SOPInstanceUID == original.SOPInstanceUID


def test_convert_between_uncompressed_syntaxes_is_not_a_decompression(
    services: Services, tmp_path: Path
) -> None:
    stored = read_instance(services.archive, _stored(services, tmp_path, _pixel_dataset()))
    assert not convert(stored, ImplicitVRLittleEndian).decompressed


def test_convert_of_undecodable_pixel_data_fails(services: Services, tmp_path: Path) -> None:
    broken = make_dataset(transfer_syntax=JPEG2000Lossless)
    broken.PixelData = encapsulate([b"\x00" * 64])
    broken["PixelData"].VR = "OB"
    broken["PixelData"].is_undefined_length = True
    stored = read_instance(services.archive, _stored(services, tmp_path, broken))
    with pytest.raises(ConversionError):
        convert(stored, ExplicitVRLittleEndian)


def test_convert_from_big_endian_is_refused(services: Services, tmp_path: Path) -> None:
    stored = read_instance(services.archive, _stored(
        services, tmp_path, make_dataset(transfer_syntax=ExplicitVRBigEndian)))
    with pytest.raises(ConversionError):
        convert(stored, ExplicitVRLittleEndian)
