"""The structural walk: every element must fit in the file, without reading pixel data."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRBigEndian, ImplicitVRLittleEndian

from pacs.archive.encoding import MalformedDataset, check_structure, read_layout
from tests.factory import (
    ENCAPSULATED_SYNTAXES,
    NATIVE_SYNTAXES,
    make_dataset,
    make_file,
    write_with_pixel_data,
)


def _check(path: Path) -> None:
    check_structure(path, read_layout(path))


@pytest.mark.parametrize("syntax", [ImplicitVRLittleEndian, ExplicitVRBigEndian])
def test_whole_file_passes_in_each_uncompressed_syntax(tmp_path: Path, syntax: str) -> None:
    _check(make_file(tmp_path, transfer_syntax=syntax))


def test_encapsulated_pixel_data_passes() -> None:
    _check(Path(get_testdata_file("JPEG2000.dcm")))


def test_truncated_pixel_data_is_malformed(tmp_path: Path) -> None:
    path = make_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    with pytest.raises(MalformedDataset, match="declares 128 bytes"):
        _check(path)


def test_file_ending_inside_an_element_header_is_malformed(tmp_path: Path) -> None:
    path = make_file(tmp_path)
    layout = read_layout(path)
    path.write_bytes(path.read_bytes()[: layout.dataset_offset + 13])
    with pytest.raises(MalformedDataset):
        _check(path)


def test_pydicom_truncated_test_files_are_malformed() -> None:
    for name in ("MR_truncated.dcm", "rtplan_truncated.dcm"):
        with pytest.raises(MalformedDataset):
            _check(Path(get_testdata_file(name)))


def test_missing_part10_prefix_is_malformed(tmp_path: Path) -> None:
    path = tmp_path / "raw.dcm"
    path.write_bytes(b"\x00" * 200)
    with pytest.raises(MalformedDataset, match="Part 10"):
        read_layout(path)


# PS3.5 A.4: Pixel Data of undefined length (encapsulated) under a native syntax is unreadable.
@pytest.mark.parametrize("syntax", NATIVE_SYNTAXES)
def test_encapsulated_pixel_data_under_a_native_syntax_is_malformed(tmp_path: Path,
                                                                   syntax: str) -> None:
    path = write_with_pixel_data(make_dataset(), tmp_path, syntax, encapsulated=True)
    with pytest.raises(MalformedDataset, match=f"^encapsulated Pixel Data, native syntax "
                                               f"{syntax}$"):
        _check(path)
    _check(write_with_pixel_data(make_dataset(), tmp_path, syntax, encapsulated=False))


# PS3.5 A.4: under an encapsulated syntax, Pixel Data of defined length (native) is unreadable.
@pytest.mark.parametrize("syntax", ENCAPSULATED_SYNTAXES.values(), ids=ENCAPSULATED_SYNTAXES)
def test_native_pixel_data_under_an_encapsulated_syntax_is_malformed(tmp_path: Path,
                                                                    syntax: str) -> None:
    path = write_with_pixel_data(make_dataset(), tmp_path, syntax, encapsulated=False)
    with pytest.raises(MalformedDataset, match=f"^native Pixel Data, encapsulated syntax "
                                               f"{syntax}$"):
        _check(path)
    _check(write_with_pixel_data(make_dataset(), tmp_path, syntax, encapsulated=True))


# PS3.5 A.4 concerns the data set's own Pixel Data: none at all (an SR) is never judged.
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.4.50", ImplicitVRLittleEndian])
def test_data_set_without_pixel_data_passes_in_any_syntax(tmp_path: Path, syntax: str) -> None:
    _check(make_file(tmp_path, transfer_syntax=syntax, PixelData=None))
