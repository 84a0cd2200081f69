"""model/datasets.py: a data set made without Dataset.__init__ is the one pydicom makes."""

from __future__ import annotations

from pydicom.charset import convert_encodings
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag

from pacs.model.datasets import dataset_of


def _elements() -> dict[BaseTag, RawDataElement]:
    tag = BaseTag(0x00100010)
    return {tag: RawDataElement(tag, "PN", 6, b"DOE^J ", 0, False, True)}


# Issue #12: C-FIND responses are made this way; they must be pydicom's data sets exactly.
def test_a_quick_data_set_has_the_state_pydicom_gives_a_new_one() -> None:
    made, expected = dataset_of(_elements()), Dataset(_elements())
    assert made.__dict__.keys() == expected.__dict__.keys()
    assert made == expected
    assert str(made.PatientName) == "DOE^J"


def test_a_quick_data_set_shares_no_mutable_state() -> None:
    first, second = dataset_of({}), dataset_of({})
    first.PatientID = "A"
    first._private_blocks[(0x0009, "X")] = None  # type: ignore[index]
    assert "PatientID" not in second
    assert second._private_blocks == {}


def test_a_quick_data_set_keeps_its_original_encoding() -> None:
    charset = convert_encodings("ISO_IR 192")
    made = dataset_of(_elements(), (False, True, charset))
    expected = Dataset(_elements())
    expected.set_original_encoding(False, True, charset)
    assert made.original_encoding == expected.original_encoding == (False, True)
    assert made.original_character_set == expected.original_character_set
    assert made.is_original_encoding == expected.is_original_encoding
