"""WADO-RS and WADO-URI on pydicom's own test files, one per transfer syntax we store:
byte-for-byte retrieve, conversion, frames, rendering of every syntax, and the DICOM JSON of
/metadata checked against DCMTK's dcm2json (values, not formatting). PS3.18 10.4, 9, Annex F.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file
from pydicom.encaps import get_frame
from pydicom.pixels import pixel_array

from pacs.services.context import Services
from tests.dcmtk import require_tool
from tests.factory import uid
from tests.web.support import Faces, module_faces, parts

# name -> stored transfer syntax: every syntax family STOW and C-STORE accept that pydicom
# ships a decodable file for.
FILES = {
    "CT_small.dcm": "1.2.840.10008.1.2.1",
    "MR_small_implicit.dcm": "1.2.840.10008.1.2",
    "rtdose.dcm": "1.2.840.10008.1.2",
    "image_dfl.dcm": "1.2.840.10008.1.2.1.99",
    "MR_small_bigendian.dcm": "1.2.840.10008.1.2.2",
    "SC_rgb_jpeg_dcmtk.dcm": "1.2.840.10008.1.2.4.50",
    "JPGExtended.dcm": "1.2.840.10008.1.2.4.51",
    "SC_rgb_jpeg_gdcm.dcm": "1.2.840.10008.1.2.4.70",
    "MR_small_jpeg_ls_lossless.dcm": "1.2.840.10008.1.2.4.80",
    "MR_small_jp2klossless.dcm": "1.2.840.10008.1.2.4.90",
    "JPEG2000.dcm": "1.2.840.10008.1.2.4.91",
    "rtdose_rle.dcm": "1.2.840.10008.1.2.5",
    "examples_palette.dcm": "1.2.840.10008.1.2.1",
    "SC_ybr_full_422_uncompressed.dcm": "1.2.840.10008.1.2.1",
}


def _read(path: Path | str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(path)


def populate(services: Services, folder: Path) -> None:
    """Each file under its own SOP Instance UID (pydicom's files share some), bytes of the
    pixel data untouched (an encapsulated value is written back as read)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        dataset = _read(get_testdata_file(name))
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = uid(name)
        path = folder / name
        dataset.save_as(path, enforce_file_format=True)
        services.ingestor.store(path)


faces = module_faces(populate)


def stored(faces: Faces, name: str) -> tuple[pydicom.Dataset, Path, str]:
    """(data set as stored, its archive file, its instance URL)."""
    record = faces.services.index.get_instance(uid(name))
    assert record is not None
    path = faces.services.archive.absolute(record.file_path)
    url = (f"studies/{record.study_instance_uid}/series/{record.series_instance_uid}"
           f"/instances/{record.sop_instance_uid}")
    return _read(path), path, url


# PS3.18 10.4.1.1.3, 8.7.3.5.2: transfer-syntax=* sends the file as stored, byte for byte.
@pytest.mark.parametrize("name", sorted(FILES))
def test_any_transfer_syntax_is_the_stored_file(faces: Faces, name: str) -> None:
    _, path, url = stored(faces, name)
    for accept in ('multipart/related; type="application/dicom"; transfer-syntax=*',
                   "multipart/related; type=application/dicom; transfer-syntax=*"):
        (part,) = parts(faces.get(url, headers={"Accept": accept}))
        assert part.body == path.read_bytes()
        assert part.headers["content-type"] == f"application/dicom; transfer-syntax={FILES[name]}"


# PS3.18 8.7.3.5.2: without transfer-syntax, application/dicom is Explicit VR Little Endian;
# compressed instances are decompressed for it.
@pytest.mark.parametrize("name", ["SC_rgb_jpeg_gdcm.dcm", "MR_small_jpeg_ls_lossless.dcm",
                                  "MR_small_jp2klossless.dcm", "rtdose_rle.dcm",
                                  "MR_small_implicit.dcm"])
def test_default_syntax_converts_to_explicit_little_endian(faces: Faces, name: str) -> None:
    original, _, url = stored(faces, name)
    (part,) = parts(faces.get(url, headers={"Accept": 'multipart/related; '
                                                      'type="application/dicom"'}))
    received = _read(io.BytesIO(part.body))
    assert received.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1"
    assert (received.pixel_array == original.pixel_array).all()


# PS3.18 8.7.3.5: a syntax we cannot produce is 406 Not Acceptable.
def test_unproducible_syntax_is_406(faces: Faces) -> None:
    _, _, url = stored(faces, "CT_small.dcm")
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50'
    assert faces.get(url, headers={"Accept": accept}).status_code == 406
    _, _, big = stored(faces, "MR_small_bigendian.dcm")
    assert faces.get(big, headers={"Accept": 'multipart/related; '
                                             'type="application/dicom"'}).status_code == 406


# PS3.18 10.4.1.1.6, 8.7.3.5.3: frames as native octet-stream, decompressed when needed.
def test_frames_decoded_as_octet_stream(faces: Faces) -> None:
    original, _, url = stored(faces, "rtdose_rle.dcm")
    response = faces.get(f"{url}/frames/2,15", headers={
        "Accept": 'multipart/related; type="application/octet-stream"'})
    got = parts(response)
    assert [p.body for p in got] == [pixel_array(original, index=i).tobytes() for i in (1, 14)]
    assert got[0].headers["content-type"].startswith("application/octet-stream")


# PS3.18 8.7.3.5.4: compressed frames as stored, under their own media type.
def test_frames_as_stored_compressed(faces: Faces) -> None:
    original, _, url = stored(faces, "rtdose_rle.dcm")
    response = faces.get(f"{url}/frames/3", headers={
        "Accept": 'multipart/related; type="image/dicom-rle"'})
    (part,) = parts(response)
    assert part.body == get_frame(original.PixelData, 2, number_of_frames=15)
    assert part.headers["content-type"] == "image/dicom-rle; transfer-syntax=1.2.840.10008.1.2.5"


# PS3.18 10.4.1.1.6: a frame that does not exist is 404; a malformed list 400.
def test_frame_out_of_range(faces: Faces) -> None:
    _, _, url = stored(faces, "CT_small.dcm")
    assert faces.get(f"{url}/frames/2").status_code == 404
    assert faces.get(f"{url}/frames/0").status_code == 400


# PS3.18 10.4.1.1.7, 8.3.5.1: every stored syntax renders, labelled by what it is.
@pytest.mark.parametrize("name", sorted(FILES))
def test_rendered_every_transfer_syntax(faces: Faces, name: str) -> None:
    original, _, url = stored(faces, name)
    for accept, kind in (("image/jpeg", "JPEG"), ("image/png", "PNG")):
        response = faces.get(f"{url}/rendered", headers={"Accept": accept})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == accept
        picture = Image.open(io.BytesIO(response.content))
        assert picture.format == kind
        assert picture.size == (original.Columns, original.Rows)


# WADO-URI (PS3.18 9): the same object as application/dicom and as image/jpeg.
def test_wado_uri(faces: Faces) -> None:
    original, path, url = stored(faces, "SC_rgb_jpeg_dcmtk.dcm")
    _, study, _, series, _, instance = url.split("/")
    base = f"/wado?requestType=WADO&studyUID={study}&seriesUID={series}&objectUID={instance}"
    as_stored = faces.get(f"{base}&contentType=application/dicom"
                          f"&transferSyntax=1.2.840.10008.1.2.4.50")
    assert (as_stored.headers["content-type"], as_stored.content) == (
        "application/dicom", path.read_bytes())
    jpeg = faces.get(f"{base}&contentType=image/jpeg&rows=50")
    assert jpeg.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).size[1] == 50
    assert faces.get(base.replace("WADO", "NOPE")).status_code == 400


def _values(document: dict[str, Any]) -> dict[str, Any]:
    """Comparable values of a DICOM JSON object: bulk data and group lengths left out."""
    found = {}
    for tag, element in document.items():
        if tag.endswith("0000") or "InlineBinary" in element or "BulkDataURI" in element:
            continue
        values = element.get("Value", [])
        if element["vr"] == "SQ":
            values = [_values(item) for item in values]
        elif element["vr"] in ("DS", "FL", "FD"):
            values = [round(float(v), 4) for v in values]
        elif element["vr"] == "IS":
            values = [int(v) for v in values]
        found[tag] = values
    return found


# PS3.18 Annex F: /metadata is the DICOM JSON DCMTK's dcm2json makes of the same file.
# (rtdose_rle.dcm's pixel data has an odd length, which DCMTK's dcmodify mangles.)
@pytest.mark.parametrize("name", sorted(set(FILES) - {"rtdose_rle.dcm"}))
def test_metadata_matches_dcm2json(faces: Faces, name: str, tmp_path: Path) -> None:
    _, path, url = stored(faces, name)
    (ours,) = faces.get(f"{url}/metadata").json()
    # dcm2json cannot inline compressed pixel data: DCMTK's dcmodify removes it from a copy.
    copy = tmp_path / "copy.dcm"
    shutil.copyfile(path, copy)
    subprocess.run([require_tool("dcmodify"), "-nb", "-ea", "(7fe0,0010)", str(copy)],
                   capture_output=True, check=True, timeout=60)
    reference = json.loads(subprocess.run([require_tool("dcm2json"), str(copy)],
                                          capture_output=True, check=True, timeout=60).stdout)
    assert _values(ours) == _values(reference)
    assert ours["7FE00010"]["BulkDataURI"].endswith(f"{url}/bulkdata/7FE00010")
