"""DICOM JSON (PS3.18 Annex F) of stored data sets, large binary values as BulkDataURIs.

Room: web/. Imports pydicom only. Values larger than `BULK_THRESHOLD` of the binary VRs are
never read from the file: they were deferred when it was read, and their URI points at the
instance's /bulkdata resource.
"""

from __future__ import annotations

import logging
from typing import Any

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

log = logging.getLogger("pacs.web")

BULK_THRESHOLD = 1024
BINARY_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "UN"}
PIXEL_DATA = 0x7FE00010
# Pixel data is always a BulkDataURI, whatever its size: viewers fetch it (or its frames).
ALWAYS_BULK = {0x7FE00008, 0x7FE00009, PIXEL_DATA}


def _raw_vr(dataset: Dataset, raw: RawDataElement) -> str:
    if raw.VR:
        return str(raw.VR)
    try:
        vr = str(dictionary_VR(raw.tag))
    except KeyError:
        return "UN"
    if " or " in vr:  # implicit VR: pixel data is OW unless samples fit in a byte
        bits = dataset.get("BitsAllocated", 16) if raw.tag == PIXEL_DATA else 16
        return "OB" if (bits or 16) <= 8 else "OW"
    return vr


def _tidy_names(document: dict[str, Any]) -> None:
    """PS3.5 6.2.1: trailing empty name components are not sent ("OB^^^^" is "OB")."""
    for element in document.values():
        if element.get("vr") == "SQ":
            for item in element.get("Value", []):
                _tidy_names(item)
        elif element.get("vr") == "PN" and "Value" in element:
            names = []
            for name in element["Value"]:
                groups = {k: v.rstrip("^") for k, v in (name or {}).items()
                          if isinstance(v, str) and v.rstrip("^")}
                names.append(groups)
            if any(names):
                element["Value"] = names
            else:
                del element["Value"]


def dataset_json(dataset: Dataset, bulk_base: str) -> dict[str, Any]:
    """The DICOM JSON object of a data set; bulk values at `{bulk_base}/{tag}`."""
    answer: dict[str, Any] = {}
    for tag in dataset.keys():
        key = f"{int(tag):08X}"
        raw = dataset.get_item(tag)
        if isinstance(raw, RawDataElement):
            vr = _raw_vr(dataset, raw)
            deferred = raw.value is None and raw.length
            if vr in BINARY_VRS and (deferred or tag in ALWAYS_BULK):
                answer[key] = {"vr": vr, "BulkDataURI": f"{bulk_base}/{key}"}
                continue
        try:
            element = dataset[tag]
        except Exception as exc:  # a value pydicom cannot convert: sent without a value
            log.debug("metadata: %s unreadable: %s", key, exc)
            answer[key] = {"vr": _raw_vr(dataset, raw) if isinstance(raw, RawDataElement)
                           else "UN"}
            continue
        if element.VR in BINARY_VRS and element.value is not None \
                and (len(element.value) > BULK_THRESHOLD or tag in ALWAYS_BULK):
            answer[key] = {"vr": element.VR, "BulkDataURI": f"{bulk_base}/{key}"}
            continue
        try:
            answer[key] = element.to_json_dict(None, BULK_THRESHOLD)
        except Exception as exc:  # malformed stored value: keep the attribute, drop the value
            log.debug("metadata: %s not encodable: %s", key, exc)
            answer[key] = {"vr": element.VR}
    _tidy_names(answer)
    if "00080005" in answer:  # the values were decoded: JSON text is UTF-8 (PS3.18 F.2)
        answer["00080005"] = {"vr": "CS", "Value": ["ISO_IR 192"]}
    return answer
