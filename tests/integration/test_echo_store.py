"""C-ECHO and C-STORE through DCMTK's echoscu and storescu, on each index backend."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.data import get_testdata_file
from pydicom.uid import ExplicitVRLittleEndian

from pacs.archive.encoding import read_layout
from pacs.dimse.server import RunningServer
from tests.conftest import scu
from tests.dcmtk import run_tool
from tests.factory import CT_IMAGE_STORAGE, make_file


def _address(server: RunningServer) -> list[str]:
    host, port = server.address
    return ["-aec", "MINIPACS", host, str(port)]


# PS3.7 9.1.5: C-ECHO verifies application-level communication.
def test_echoscu_gets_success(server: RunningServer) -> None:
    result = run_tool("echoscu", _address(server))
    assert result.returncode == 0, result.stderr


# PS3.4 B.2.3: a conformant instance is stored and answered with Success.
def test_storescu_instance_is_stored_byte_identical(server: RunningServer, tmp_path: Path) -> None:
    source = make_file(tmp_path / "in", patient_id="P-ECHO", patient_name="Müller^Jürgen")
    result = run_tool("storescu", [*_address(server), str(source)])
    assert result.returncode == 0, result.stderr
    record = server.services.index.get_instance(pydicom.dcmread(source).SOPInstanceUID)
    assert record is not None
    stored = server.services.archive.absolute(record.file_path)
    sent = pydicom.dcmread(source)
    received = pydicom.dcmread(stored)
    assert received == sent
    assert str(received.PatientName) == "Müller^Jürgen"


# DESIGN rule 3: the data set is written as received, never decoded and re-encoded.
def test_stored_data_set_bytes_are_the_bytes_sent(
    server: RunningServer, tmp_path: Path, chunked_send: None
) -> None:
    source = make_file(tmp_path / "in", patient_id="P-BYTES")
    ae = scu(CT_IMAGE_STORAGE, transfer_syntaxes=[ExplicitVRLittleEndian])
    host, port = server.address
    association = ae.associate(host, port, ae_title="MINIPACS")
    assert association.is_established
    status = association.send_c_store(source)
    association.release()
    assert status.Status == 0x0000
    record = server.services.index.get_instance(pydicom.dcmread(source).SOPInstanceUID)
    assert record is not None
    stored = server.services.archive.absolute(record.file_path).read_bytes()
    sent = source.read_bytes()
    sent_data_set = sent[read_layout(source).dataset_offset :]
    assert stored[read_layout(server.services.archive.absolute(record.file_path))
                  .dataset_offset :] == sent_data_set


def test_storescu_pydicom_ct_small_is_indexed(server: RunningServer) -> None:
    path = get_testdata_file("CT_small.dcm")
    result = run_tool("storescu", [*_address(server), path])
    assert result.returncode == 0, result.stderr
    stats = server.services.index.stats()
    assert (stats.patients, stats.studies, stats.series, stats.instances) == (1, 1, 1, 1)
