"""Every file of pydicom's bundled test data, sent by real clients in its own transfer syntax."""

from __future__ import annotations

import shutil
import warnings
from collections import defaultdict
from pathlib import Path

import pydicom
from pydicom.data import get_testdata_files
from pydicom.uid import UID
from pynetdicom import AllStoragePresentationContexts

from pacs.archive.encoding import has_part10_prefix, read_layout
from pacs.archive.files import is_valid_uid
from pacs.dimse.server import RunningServer
from pacs.model.status import StoreStatus
from tests.conftest import scu
from tests.dcmtk import StorescuProgress, run_tool

STORAGE_CLASSES = {str(cx.abstract_syntax) for cx in AllStoragePresentationContexts}
# Broken on purpose in pydicom's test data: the structural walk must refuse them.
MALFORMED = {"MR_truncated.dcm", "rtplan_truncated.dcm", "SC_rgb_jpeg.dcm"}
# storescu's option that proposes each compressed syntax (uncompressed ones need none).
STORESCU_PROPOSAL = {
    "1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx",
    "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.4.90": "-xv",
    "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.4.80": "-xt",
    "1.2.840.10008.1.2.4.81": "-xu", "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1.99": "-xd",
}


def _sendable_files() -> list[tuple[Path, str, str, str]]:
    """(path, SOP class, transfer syntax, meta SOP instance) of every storage Part 10 file."""
    files = []
    for name in get_testdata_files():
        path = Path(name)
        if not path.is_file() or not has_part10_prefix(path):
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # some test files are deliberately odd
            meta = pydicom.dcmread(path, stop_before_pixels=True, force=True).file_meta
        sop_class = str(meta.get("MediaStorageSOPClassUID", ""))
        syntax = str(meta.get("TransferSyntaxUID", ""))
        if sop_class in STORAGE_CLASSES and syntax:
            files.append((path, sop_class, syntax, str(meta.MediaStorageSOPInstanceUID)))
    return files


def _expected_status(path: Path, meta_instance: str) -> int:
    """What PS3.4 B.2.3 says the file deserves, judged independently of the server's code."""
    if path.name in MALFORMED:
        return StoreStatus.CANNOT_UNDERSTAND
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    if str(dataset.get("SOPInstanceUID", "")) != meta_instance:
        return StoreStatus.DATASET_DOES_NOT_MATCH_SOP_CLASS
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        if not is_valid_uid(str(dataset.get(keyword, ""))):
            return StoreStatus.CANNOT_UNDERSTAND
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        whole = pydicom.dcmread(path, force=True)
    pixels, syntax = whole.get_item(0x7FE00010), UID(whole.file_meta.TransferSyntaxUID)
    if pixels is not None and pixels.length and \
            (pixels.length == 0xFFFFFFFF) != syntax.is_encapsulated:
        return StoreStatus.CANNOT_UNDERSTAND  # PS3.5 A.4: pixels not encoded as labelled
    return StoreStatus.SUCCESS


def _data_set_bytes(path: Path) -> bytes:
    return path.read_bytes()[read_layout(path).dataset_offset :]


# PS3.4 B.2.3 and DESIGN rule 3: every transfer syntax is accepted and stored as received.
def test_every_testdata_file_gets_its_status_and_is_stored_as_sent(
    server: RunningServer, chunked_send: None
) -> None:
    files = _sendable_files()
    host, port = server.address
    first_sent: dict[str, Path] = {}
    by_context: dict[tuple[str, str], list[tuple[Path, str]]] = defaultdict(list)
    for path, sop_class, syntax, meta_instance in files:
        by_context[(sop_class, syntax)].append((path, meta_instance))
    contexts = sorted(by_context)
    for start in range(0, len(contexts), 100):
        batch = contexts[start : start + 100]
        ae = scu()
        for sop_class, syntax in batch:
            ae.add_requested_context(sop_class, [syntax])
        association = ae.associate(host, port, ae_title="MINIPACS")
        assert association.is_established
        for key in batch:
            for path, meta_instance in by_context[key]:
                status = association.send_c_store(path)
                expected = _expected_status(path, meta_instance)
                assert status.Status == expected, f"{path.name}: {status}"
                if expected == StoreStatus.SUCCESS:
                    first_sent.setdefault(meta_instance, path)
        association.release()

    index, archive = server.services.index, server.services.archive
    assert index.stats().instances == len(first_sent)
    syntaxes = set()
    for uid, path in first_sent.items():
        record = index.get_instance(uid)
        assert record is not None, path.name
        assert _data_set_bytes(archive.absolute(record.file_path)) == _data_set_bytes(path)
        syntaxes.add(record.transfer_syntax_uid)
    assert len(syntaxes) >= 10, sorted(UID(s).name for s in syntaxes)


# PS3.4 B.2.3: a real modality's SCU, DCMTK storescu, storing each syntax it can propose.
def test_storescu_stores_testdata_in_each_syntax_it_can_propose(
    server: RunningServer, tmp_path: Path
) -> None:
    groups: dict[str, list[Path]] = defaultdict(list)
    for path, _sop_class, syntax, meta_instance in _sendable_files():
        if syntax in STORESCU_PROPOSAL or not UID(syntax).is_compressed:
            if _expected_status(path, meta_instance) == StoreStatus.SUCCESS:
                groups[STORESCU_PROPOSAL.get(syntax, "-x=")].append(path)
    host, port = server.address
    stored: dict[str, Path] = {}
    for option, paths in groups.items():
        folder = tmp_path / option.strip("-=") / ""
        folder.mkdir(parents=True, exist_ok=True)
        for path in paths:
            shutil.copy(path, folder / path.name)
        result = run_tool("storescu", ["-v", "-nh", "+sd", option, "-aec", "MINIPACS",
                                       host, str(port), str(folder)])
        for sent in StorescuProgress.of(result.stdout + result.stderr).acknowledged:
            name = Path(sent).name
            stored.setdefault(str(pydicom.dcmread(folder / name, force=True).SOPInstanceUID),
                              folder / name)
    assert len(stored) >= 90
    for uid, path in stored.items():
        record = server.services.index.get_instance(uid)
        assert record is not None, path.name
        received = pydicom.dcmread(server.services.archive.absolute(record.file_path))
        assert received.SOPInstanceUID == uid
