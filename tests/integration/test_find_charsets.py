"""C-FIND over pydicom's bundled test files: names in eleven character sets, queried in
their own encodings (ISO 2022 included), answered in ISO_IR 192 (PS3.4 C.2.2.2,
C.4.1.1.3.2)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_charset_files, get_testdata_file

from pacs.dimse.server import RunningServer
from pacs.services.context import Services
from tests.integration.find_support import find, module_server, query

CHARSET_FILES = ["chrArab.dcm", "chrFren.dcm", "chrFrenMulti.dcm", "chrGerm.dcm",
                 "chrGreek.dcm", "chrH31.dcm", "chrH32.dcm", "chrHbrw.dcm", "chrI2.dcm",
                 "chrJapMulti.dcm", "chrKoreanMulti.dcm", "chrRuss.dcm", "chrX1.dcm",
                 "chrX2.dcm"]


def _path(name: str) -> Path:
    found = get_charset_files(name) if name.startswith("chr") else [get_testdata_file(name)]
    assert found and found[0] is not None, name
    return Path(found[0])


def populate(services: Services, folder: Path) -> None:
    """Every charset file with UIDs, plus CT_small and MR_small, through the pipeline."""
    folder.mkdir(parents=True)
    for name in [*CHARSET_FILES, "CT_small.dcm", "MR_small.dcm"]:
        copy = folder / name
        shutil.copyfile(_path(name), copy)
        services.ingestor.store(copy)


find_server = module_server(populate)


def _patient_ids(server: RunningServer, name: str, charset: object) -> list[str]:
    result = find(server, query(QueryRetrieveLevel="STUDY", SpecificCharacterSet=charset,
                                PatientName=name, PatientID=""))
    assert result.status == 0x0000
    return result.values("PatientID")


# "やまだ^たろう" is also the phonetic component group of the two H3x names.
ALSO_MATCHING = {"chrJapMulti.dcm": ["H31EXAMPLE", "H32EXAMPLE"]}


# PS3.4 C.2.2.2.1: each stored name is found by its exact value, sent in UTF-8.
@pytest.mark.parametrize("name", CHARSET_FILES)
def test_name_found_in_utf8(find_server: RunningServer, name: str) -> None:
    stored = pydicom.dcmread(_path(name))
    found = _patient_ids(find_server, str(stored.PatientName), "ISO_IR 192")
    assert found == sorted([stored.PatientID, *ALSO_MATCHING.get(name, [])])


# PS3.4 C.2.2.2: a request in ISO 2022 IR 87 (JIS X 0208 with escapes) is decoded, and
# "山田^太郎" matches the ideographic group of "Yamada^Tarou=山田^太郎=やまだ^たろう".
def test_iso_2022_ir_87_request(find_server: RunningServer) -> None:
    assert _patient_ids(find_server, "山田^太郎", ["", "ISO 2022 IR 87"]) == [
        "H31EXAMPLE", "H32EXAMPLE"]


# PS3.4 C.2.2.2: a request in ISO 2022 IR 149 (Korean).
def test_iso_2022_ir_149_request(find_server: RunningServer) -> None:
    assert _patient_ids(find_server, "홍^길동", ["", "ISO 2022 IR 149"]) == ["I2EXAMPLE"]


# PS3.4 C.2.2.2: single-byte requests: Cyrillic (ISO_IR 144), Greek (ISO_IR 126).
def test_single_byte_character_set_requests(find_server: RunningServer) -> None:
    assert _patient_ids(find_server, "Люкceмбypг", "ISO_IR 144") == ["SCSRUSS"]
    assert _patient_ids(find_server, "Διονυσιος", "ISO_IR 126") == ["SCSGREEK"]


# PS3.4 C.2.2.2.4: a wildcard on the ideographic group needs a leading "*".
def test_wildcard_on_a_later_component_group(find_server: RunningServer) -> None:
    assert _patient_ids(find_server, "*王^小*", "ISO_IR 192") == ["X1EXAMPLE", "X2EXAMPLE"]
    assert _patient_ids(find_server, "王*", "ISO_IR 192") == []


# PS3.4 C.4.1.1.3.2: the answer is in ISO_IR 192, whatever the stored encoding was.
def test_answer_in_iso_ir_192(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="STUDY", PatientID="H32EXAMPLE",
                                     PatientName=""))
    identifier = result.identifiers[0]
    assert identifier.SpecificCharacterSet == "ISO_IR 192"
    assert str(identifier.PatientName) == "ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう"


# PS3.4 C.4.1.1.3.2: an all-ASCII answer carries no Specific Character Set.
def test_ascii_answer_has_no_character_set(find_server: RunningServer) -> None:
    result = find(find_server, query(QueryRetrieveLevel="PATIENT", PatientID="1CT1",
                                     PatientName=""), model="P")
    assert [str(i.PatientName) for i in result.identifiers] == ["CompressedSamples^CT1"]
    assert "SpecificCharacterSet" not in result.identifiers[0]
