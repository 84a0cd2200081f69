"""The browse page's data set (no tests here): patients and studies an administrator would
search among, with phantom images whose thumbnails look like something, and a real headless
Chromium driven by Selenium (Debian's `chromium` and `chromium-driver`).

Screenshots go to `test-artifacts/browse/` at the top of the checkout, which the test run
keeps (and git ignores).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydicom.dataset import Dataset

from pacs.services.context import Services
from tests.dcmtk import IN_CI
from tests.factory import make_dataset

REPO = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = REPO / "test-artifacts" / "browse"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1366, 900)  # a laptop screen
SR_STORAGE = "1.2.840.10008.5.1.4.1.1.88.11"
SOP_CLASSES = {"CT": "1.2.840.10008.5.1.4.1.1.2", "MR": "1.2.840.10008.5.1.4.1.1.4",
               "US": "1.2.840.10008.5.1.4.1.1.6.1", "CR": "1.2.840.10008.5.1.4.1.1.1",
               "OT": "1.2.840.10008.5.1.4.1.1.7", "SR": SR_STORAGE}
# Markup in values must show as text: a PN cannot hold "=" (it separates component groups),
# so the attribute-carrying payload is in the description.
MARKUP_NAME = "Markup^<b>Bold</b>"
MARKUP_DESCRIPTION = "<img src=x onerror=document.body.dataset.owned=1>"


@dataclass(frozen=True)
class StudySpec:
    """One study of the data set: its patient, attributes and series (modality, count)."""

    patient: tuple[str, str, str, str]  # name, ID, birth date, sex
    label: str
    date: str
    accession: str
    description: str
    series: tuple[tuple[str, int, str], ...]  # modality, instances, description


PATIENTS = {
    "anna": ("Smith^Anna", "SMI001", "19650412", "F"),
    "robert": ("Smith^Robert", "SMI002", "19581130", "M"),
    "mary": ("Jones^Mary^Ellen", "JON001", "19800101", "F"),
    "juergen": ("Müller^Jürgen", "MUE001", "19721224", "M"),
    "yui": ("Nakamura^Yui", "NAK001", "19910305", "F"),
    "liam": ("O'Brien^Liam", "OBR001", "20010717", "M"),
    "markup": (MARKUP_NAME, "MRK001", "19990909", "O"),
}
STUDIES = (
    StudySpec(PATIENTS["anna"], "ANNA-CT", "20240315", "A1001", "CT Chest with contrast",
              (("CT", 3, "Scout"), ("CT", 4, "Axial 5mm"), ("CT", 3, "Coronal MPR"),
               ("SR", 1, "Dose report"))),
    StudySpec(PATIENTS["anna"], "ANNA-MR", "20240402", "A1002", "MR Brain",
              (("MR", 3, "T1 sagittal"), ("MR", 3, "T2 axial"))),
    StudySpec(PATIENTS["robert"], "ROB-CR", "20231120", "A1003", "Chest PA and lateral",
              (("CR", 2, "PA"), ("CR", 1, "Lateral"))),
    StudySpec(PATIENTS["mary"], "MARY-US", "20240315", "A1004", "Abdomen ultrasound",
              (("US", 3, "Liver"),)),
    StudySpec(PATIENTS["juergen"], "JUE-CT", "20250105", "A1005", "CT Abdomen",
              (("CT", 3, "Axial"),)),
    StudySpec(PATIENTS["yui"], "YUI-MR", "20240610", "A1006", "MR Knee left",
              (("MR", 2, "PD fat sat"),)),
    StudySpec(PATIENTS["liam"], "LIAM-CR", "20230102", "A1007", "Hand",
              (("CR", 1, "Hand PA"),)),
    StudySpec(PATIENTS["markup"], "MRK-OT", "20220808", "A1008", MARKUP_DESCRIPTION,
              (("OT", 1, "Other"),)),
)


def phantom(modality: str, number: int, size: int = 96) -> bytes:
    """A 12-bit image that reads as an image in a thumbnail: a body outline with organs for
    cross-sections, a gradient with bones for radiographs."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size - 0.5
    if modality in ("CR", "DX", "OT"):
        image = 600 + 2400 * (0.5 - np.abs(x)) * (1 - np.abs(y))
        for offset in (-0.2, 0.0, 0.2):
            image[np.abs(x - offset) < 0.03] += 1200
    else:
        body = (x / 0.42) ** 2 + (y / 0.34) ** 2 < 1
        image = np.where(body, 1000.0, 0.0)
        for cx, cy, r, v in ((-0.15, 0.0, 0.1, 1800), (0.15, 0.0, 0.1, 1800),
                             (0.0, 0.2, 0.05 + 0.01 * number, 3000)):
            image[(x - cx) ** 2 + (y - cy) ** 2 < r * r] = v
        if modality == "US":
            image = image * (0.6 + 0.4 * np.sin(x * 40 + number))
    return np.clip(image, 0, 4095).astype("<u2").tobytes()


def datasets() -> Iterator[Dataset]:
    """Every instance of the data set."""
    for spec in STUDIES:
        name, patient_id, birth, sex = spec.patient
        for series_number, (modality, count, description) in enumerate(spec.series, 1):
            for number in range(1, count + 1):
                extra: dict[str, Any] = {}
                if modality == "SR":
                    extra = {"Rows": None, "Columns": None, "SamplesPerPixel": None,
                             "PhotometricInterpretation": None, "BitsAllocated": None,
                             "BitsStored": None, "HighBit": None,
                             "PixelRepresentation": None, "PixelData": None}
                dataset = make_dataset(
                    patient_id=patient_id, patient_name=name, study=spec.label,
                    series=f"{spec.label}-{series_number}", instance=number,
                    modality=modality, rows=96, columns=96,
                    sop_class=SOP_CLASSES[modality],
                    PatientBirthDate=birth, PatientSex=sex, StudyDate=spec.date,
                    AccessionNumber=spec.accession, StudyDescription=spec.description,
                    SeriesDescription=description, SeriesNumber=series_number,
                    SeriesDate=spec.date, **extra)
                if modality != "SR":
                    dataset.PixelData = phantom(modality, number)
                yield dataset


def populate_browse(services: Services, folder: Path) -> None:
    """Store the data set through the C-STORE pipeline."""
    folder.mkdir(parents=True, exist_ok=True)
    for number, dataset in enumerate(datasets()):
        path = folder / f"{number}.dcm"
        dataset.save_as(path, enforce_file_format=True)
        services.ingestor.store(path)


def study_uid_of(label: str) -> str:
    """The Study Instance UID of a study of the data set, by its label."""
    spec = next(s for s in STUDIES if s.label == label)
    return str(make_dataset(patient_id=spec.patient[1], study=label).StudyInstanceUID)


def require_browser() -> None:
    """Skip (fail under CI=true) when Selenium, Chromium or its driver is missing."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e .[test])")
    if missing:
        message = (f"{', '.join(missing)} missing (apt-get install chromium chromium-driver; "
                   "scripts/test does it)")
        if IN_CI:
            pytest.fail(message + " - under CI=true this is an error, not a skip")
        pytest.skip(message)


def start_browser(downloads: Path) -> Any:
    """Headless Chromium at a fixed window size, downloads saved into `downloads`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", f"--window-size={WINDOW[0]},{WINDOW[1]}",
                     "--no-first-run", "--disable-extensions", "--lang=en-US"):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {
        "download.default_directory": str(downloads), "download.prompt_for_download": False,
        "safebrowsing.enabled": False})
    # The driver is Debian's: no Selenium Manager, nothing downloaded.
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER, env={
        **os.environ, "SE_MANAGER_PATH": ""}))
    driver.set_page_load_timeout(60)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                           {"behavior": "allow", "downloadPath": str(downloads)})
    return driver


def screenshot(driver: Any, name: str) -> Path:
    """Save what the browser shows as test-artifacts/browse/NAME.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path
