"""The benchmark's deterministic data set: CT instances over patients, studies and series.

Layer: tool (pacs.bench); pydicom and numpy only. The same seed and sizes always give the same
UIDs and bytes, so every peer gets identical files and results compare across runs.
A manifest (JSON) next to the files records the hierarchy, from which every expected count
(instances stored, moved, retrieved, C-FIND matches) is derived.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
UID_ROOT = "1.2.826.0.1.3680043.10.1071.99"
MANIFEST = "manifest.json"
FORMAT_VERSION = 2
BASE_DATE = datetime.date(2024, 1, 1)
SURNAMES = ("SMITH", "JONES", "BROWN", "GARCIA", "MILLER")


def bench_uid(*parts: object) -> str:
    """A valid, deterministic UID (at most 64 characters) from arbitrary parts."""
    digest = int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:24], 16)
    return f"{UID_ROOT}.{digest}"


@dataclass
class SeriesInfo:
    """One series: its UID and the SOP Instance UIDs it holds."""

    uid: str
    number: int
    instances: list[str] = field(default_factory=list)


@dataclass
class StudyInfo:
    """One study: UID, owner, the attributes queries match on, and its series."""

    uid: str
    patient_id: str
    patient_name: str
    date: str
    accession: str
    series: list[SeriesInfo] = field(default_factory=list)

    @property
    def instance_count(self) -> int:
        """Instances in the study."""
        return sum(len(series.instances) for series in self.series)


@dataclass
class Manifest:
    """What the data set holds and where: the source of every expected count."""

    instances: int
    rows: int
    columns: int
    patients: int
    studies: list[StudyInfo]
    files: list[str]
    total_bytes: int
    version: int = FORMAT_VERSION

    def study(self, index: int) -> StudyInfo:
        """The study at `index` (the one 'one study' operations use is `target_study`)."""
        return self.studies[index]

    @property
    def target_study(self) -> StudyInfo:
        """The study that single-study operations (C-MOVE, C-GET, series C-FIND) use."""
        return self.studies[len(self.studies) // 2]

    def save(self, folder: Path) -> None:
        """Write the manifest as JSON into `folder`."""
        (folder / MANIFEST).write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, folder: Path) -> Manifest | None:
        """The manifest in `folder`, or None if absent, unreadable or of another format."""
        try:
            data = json.loads((folder / MANIFEST).read_text())
            if data.get("version") != FORMAT_VERSION:
                return None
            studies = [
                StudyInfo(**{**study, "series": [SeriesInfo(**s) for s in study["series"]]})
                for study in data.pop("studies")
            ]
            return cls(studies=studies, **data)
        except (OSError, ValueError, TypeError, KeyError):
            return None


def _template(rows: int, columns: int) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.Modality = "CT"
    ds.Manufacturer = "minipacs bench"
    ds.ReferringPhysicianName = "REFERRING^DOCTOR"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.BodyPartExamined = "CHEST"
    ds.KVP = "120"
    ds.SliceThickness = "1.0"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.Rows = rows
    ds.Columns = columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"
    return ds


def plan(instances: int, patients: int = 10, studies: int = 20,
         series_per_study: int = 2) -> list[StudyInfo]:
    """The hierarchy: `instances` spread in contiguous blocks over studies and series."""
    studies = max(1, min(studies, instances))
    patients = max(1, min(patients, studies))
    result: list[StudyInfo] = []
    for s in range(studies):
        p = s * patients // studies
        first, last = s * instances // studies, (s + 1) * instances // studies
        count = last - first
        study = StudyInfo(
            uid=bench_uid("study", s),
            patient_id=f"BENCH{p:03d}",
            patient_name=f"{SURNAMES[p % len(SURNAMES)]}^PATIENT{p:02d}",
            date=(BASE_DATE + datetime.timedelta(days=s)).strftime("%Y%m%d"),
            accession=f"ACC{s:06d}",
        )
        n_series = max(1, min(series_per_study, count))
        for r in range(n_series):
            series = SeriesInfo(uid=bench_uid("series", s, r), number=r + 1)
            lo, hi = first + r * count // n_series, first + (r + 1) * count // n_series
            series.instances = [bench_uid("instance", k) for k in range(lo, hi)]
            study.series.append(series)
        result.append(study)
    return result


def generate(folder: Path, instances: int = 1000, small: bool = False,
             seed: int = 20240101) -> Manifest:
    """Write the data set into `folder` (reused when an identical one is already there)."""
    rows = columns = 32 if small else 512
    existing = Manifest.load(folder)
    if (existing is not None and existing.instances == instances and existing.rows == rows
            and all((folder / name).is_file() for name in existing.files)):
        return existing
    folder.mkdir(parents=True, exist_ok=True)
    studies = plan(instances)
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 4096, rows * columns, dtype=np.uint16)
    template = _template(rows, columns)
    files: list[str] = []
    total = 0
    k = 0
    for s, study in enumerate(studies):
        for series in study.series:
            for number, sop_uid in enumerate(series.instances, start=1):
                ds = _instance(template, study, series, sop_uid, number, s)
                ds.PixelData = np.roll(base, k * 7).tobytes()
                name = f"s{s:03d}/{k:07d}.dcm"
                path = folder / name
                path.parent.mkdir(exist_ok=True)
                ds.save_as(path, enforce_file_format=True)
                files.append(name)
                total += path.stat().st_size
                k += 1
    manifest = Manifest(instances=instances, rows=rows, columns=columns,
                        patients=len({study.patient_id for study in studies}),
                        studies=studies, files=files, total_bytes=total)
    manifest.save(folder)
    return manifest


def _instance(template: Dataset, study: StudyInfo, series: SeriesInfo, sop_uid: str,
              number: int, study_index: int) -> Dataset:
    ds = Dataset()
    ds.update(template)
    ds.SOPInstanceUID = sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study.date
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101500"
    ds.AccessionNumber = study.accession
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.StudyInstanceUID = study.uid
    ds.SeriesInstanceUID = series.uid
    ds.StudyID = f"{study_index + 1}"
    ds.StudyDescription = f"BENCH STUDY {study_index + 1}"
    ds.SeriesDescription = f"AXIAL {series.number}"
    ds.SeriesNumber = series.number
    ds.InstanceNumber = number
    ds.ImagePositionPatient = [-180, -180, number * 1.0]
    ds.SliceLocation = number * 1.0
    ds.FrameOfReferenceUID = bench_uid("frame", study.uid)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = UID(ExplicitVRLittleEndian)
    ds.file_meta = meta
    return ds
