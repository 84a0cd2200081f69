"""The C_STORE primitive of a received C-STORE-RQ (PS3.7 9.3.1.1) is built from the command
set's values by pacs.dimse.pynetdicom_internals.serving for the plain commands storage SCUs
send; it must equal what pynetdicom's own conversion builds, and every other command must get
pynetdicom's conversion (its warnings, truncations and refusals)."""

from __future__ import annotations

from io import BytesIO
from typing import Any

import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pynetdicom import dimse_messages
from pynetdicom.dsutils import decode

from pacs.dimse.pynetdicom_internals import serving

CT = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE = "1.2.826.0.1.3680043.10.1071.5.1"
PUBLIC = ("AffectedSOPClassUID", "AffectedSOPInstanceUID", "MessageID", "Priority",
          "MoveOriginatorApplicationEntityTitle", "MoveOriginatorMessageID", "DataSet",
          "MessageIDBeingRespondedTo", "_context_id", "_dataset_path", "_dataset_file")


def _message(**elements: Any) -> Any:
    """A complete C-STORE-RQ message as pynetdicom holds it after decoding its command set."""
    command = Dataset()
    command.CommandGroupLength = 0
    command.AffectedSOPClassUID = CT
    command.CommandField = 0x0001
    command.MessageID = 7
    command.Priority = 0
    command.CommandDataSetType = 1
    command.AffectedSOPInstanceUID = INSTANCE
    for keyword, value in elements.items():
        if value is None:
            delattr(command, keyword)
        else:
            setattr(command, keyword, value)
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, True
    write_dataset(encoded, command)
    message = dimse_messages.C_STORE_RQ()
    message.command_set = decode(BytesIO(encoded.getvalue()), True, True)
    message.context_id = 3
    message.data_set = BytesIO(b"data")
    message._data_set_path = "/incoming/file.dcm"
    message._data_set_file = None
    return message


def _fields(primitive: Any) -> dict[str, Any]:
    fields = {name: getattr(primitive, name) for name in PUBLIC}
    fields["DataSet"] = fields["DataSet"].getvalue()
    return fields


def _pynetdicoms(message: Any) -> dict[str, Any]:
    return _fields(serving._pynetdicom_message_to_primitive(message))


@pytest.mark.parametrize("elements", [
    {}, {"Priority": 1}, {"Priority": 2}, {"MessageID": 65535},
    {"AffectedSOPInstanceUID": "1.2.3"},  # odd length: padded with a NUL on the wire
    {"AffectedSOPInstanceUID": "1." + "2" * 62},  # 64 characters
    {"CommandGroupLength": None},
])
def test_plain_store_request_gets_the_primitive_pynetdicom_builds(
        elements: dict[str, Any]) -> None:
    # PS3.7 9.3.1.1: the C-STORE request's parameters, whichever side converts them.
    message = _message(**elements)
    assert _fields(serving.store_request_primitive(message)) == _pynetdicoms(_message(**elements))


@pytest.mark.parametrize("elements", [
    {"MoveOriginatorApplicationEntityTitle": "MOVER", "MoveOriginatorMessageID": 3},
    {"AffectedSOPInstanceUID": "1.2.03"},  # a leading zero: non-conformant, pynetdicom warns
    {"AffectedSOPInstanceUID": "1.2.3.x"},
    {"AffectedSOPInstanceUID": "1." + "2" * 63},  # 65 characters: pynetdicom refuses
    {"AffectedSOPClassUID": ""},
])
def test_any_other_store_request_gets_pynetdicoms_conversion(
        elements: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    # PS3.7 9.3.1.1 and PS3.5 9.1: what is not plain is pynetdicom's to judge.
    taken: list[Any] = []
    original = serving._pynetdicom_message_to_primitive
    monkeypatch.setattr(serving, "_pynetdicom_message_to_primitive",
                        lambda message: taken.append(message) or original(message))
    message = _message(**elements)
    try:
        serving.store_request_primitive(message)
    except ValueError:
        pass  # pynetdicom refuses it (the DIMSE provider then aborts the association)
    assert taken == [message]


def test_received_store_requests_are_converted_by_minipacs() -> None:
    assert dimse_messages.C_STORE_RQ.message_to_primitive is serving.store_request_primitive


def test_store_request_with_an_unknown_priority_is_refused_as_pynetdicom_refuses_it() -> None:
    # PS3.7 9.3.1.1: Priority is LOW, MEDIUM or HIGH; pynetdicom's primitive refuses others.
    with pytest.raises(ValueError, match="Priority"):
        serving._pynetdicom_message_to_primitive(_message(Priority=3))
    with pytest.raises(ValueError, match="Priority"):
        serving.store_request_primitive(_message(Priority=3))


def _read_while_receiving(command: Dataset) -> dict[str, Any]:
    values = {}
    for keyword in ("CommandField", "CommandDataSetType", "AffectedSOPClassUID",
                    "AffectedSOPInstanceUID"):
        try:
            values[keyword] = getattr(command, keyword)
        except AttributeError:
            values[keyword] = "absent"
    return values


@pytest.mark.parametrize("elements", [
    {}, {"AffectedSOPInstanceUID": "1.2.3"}, {"AffectedSOPInstanceUID": "1.2.03"},
    {"AffectedSOPInstanceUID": "1." + "2" * 63}, {"AffectedSOPClassUID": ""},
    {"AffectedSOPInstanceUID": None}, {"CommandField": 0x0030, "CommandDataSetType": 0x0101},
    {"CommandField": 0x0020, "AffectedSOPInstanceUID": None, "CommandDataSetType": 0x0001},
])
def test_command_set_reads_the_values_pydicom_reads(elements: dict[str, Any]) -> None:
    # PS3.7 6.3.1 / E.1-1: Command Field, Data Set Type and the affected UIDs of any command.
    message = _message(**elements)
    encoded = DicomBytesIO()
    encoded.is_little_endian, encoded.is_implicit_VR = True, True
    write_dataset(encoded, message.command_set)
    ours = serving.decode_command_set(BytesIO(encoded.getvalue()), True, True)
    assert type(ours) is serving.CommandSet
    assert _read_while_receiving(ours) == _read_while_receiving(
        decode(BytesIO(encoded.getvalue()), True, True))


def test_received_command_sets_are_decoded_by_minipacs() -> None:
    assert dimse_messages.decode is serving.decode_command_set
