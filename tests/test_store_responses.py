"""PS3.7 9.3.1.2: the C-STORE responses to our own sub-operations, decoded from their bytes
(dimse/pynetdicom_internals/store_responses.py), say what pynetdicom's decoding says; anything
but a plain C-STORE-RSP is left to pynetdicom."""

from __future__ import annotations

from typing import Any

import pytest
from pynetdicom import AE
from pynetdicom.association import Association
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu_primitives import P_DATA

from pacs.dimse.pynetdicom_internals import encode_command, expect_store_responses
from pacs.dimse.pynetdicom_internals.messages import HardenedDIMSE
from pacs.dimse.pynetdicom_internals.store_responses import (
    StoreResponseDIMSE,
    decode_store_response,
)

CT = "1.2.840.10008.5.1.4.1.1.2"
INSTANCE = "1.2.826.0.1.3680043.10.1071.7.1"
PLAIN = {"CommandField": 0x8001, "CommandDataSetType": 0x0101, "AffectedSOPClassUID": CT,
         "MessageIDBeingRespondedTo": 7, "Status": 0x0000, "AffectedSOPInstanceUID": INSTANCE}


def _p_data(command: bytes, control: int = 0x03, context_id: int = 3) -> P_DATA:
    primitive = P_DATA()
    primitive.presentation_data_value_list = [[context_id, bytes([control]) + command]]
    return primitive


def _pynetdicom_decode(primitive: P_DATA) -> Any:
    message = DIMSEMessage()
    assert message.decode_msg(primitive)
    return message.message_to_primitive()


# PS3.7 9.3.1.2: Success, a warning (0xB000) and a failure (0xA700) without Error Comment.
@pytest.mark.parametrize("status", [0x0000, 0xB000, 0xA700, 0x0001])
def test_a_plain_c_store_response_decodes_as_pynetdicom_decodes_it(status: int) -> None:
    primitive = _p_data(encode_command({**PLAIN, "Status": status}))
    context_id, ours = decode_store_response(primitive)
    theirs = _pynetdicom_decode(primitive)
    assert context_id == 3
    assert isinstance(ours, C_STORE)
    for keyword in ("MessageIDBeingRespondedTo", "Status", "AffectedSOPClassUID",
                    "AffectedSOPInstanceUID"):
        assert getattr(ours, keyword) == getattr(theirs, keyword), keyword
    assert ours.is_valid_response


def test_a_response_without_its_uids_decodes_too() -> None:
    fields = {**PLAIN, "AffectedSOPClassUID": None, "AffectedSOPInstanceUID": None}
    _, ours = decode_store_response(_p_data(encode_command(fields)))
    assert (ours.Status, ours.MessageIDBeingRespondedTo) == (0x0000, 7)
    assert ours.AffectedSOPInstanceUID is None


@pytest.mark.parametrize("what", [
    "error comment", "offending element", "another command", "a data set follows",
    "not the last fragment", "a data set fragment", "two values", "overrun", "short status",
    "another group", "no status",
])
def test_anything_but_a_plain_c_store_response_is_left_to_pynetdicom(what: str) -> None:
    fields: dict[str, Any] = dict(PLAIN)
    control = 0x03
    if what == "error comment":
        fields["ErrorComment"] = "disk full"
    elif what == "offending element":
        fields["OffendingElement"] = [0x00080018]
    elif what == "another command":
        fields["CommandField"] = 0x8030  # C-ECHO-RSP
    elif what == "a data set follows":
        fields["CommandDataSetType"] = 0x0001
    elif what == "no status":
        fields["Status"] = None
    elif what == "not the last fragment":
        control = 0x01
    elif what == "a data set fragment":
        control = 0x02
    command = encode_command(fields)
    if what == "overrun":
        command = command[:-4]
    elif what == "short status":
        command = command.replace(b"\x00\x00\x00\x09\x02\x00\x00\x00\x00\x00",
                                  b"\x00\x00\x00\x09\x01\x00\x00\x00\x00", 1)
    elif what == "another group":
        command += b"\x08\x00\x18\x00\x00\x00\x00\x00"
    primitive = _p_data(command, control)
    if what == "two values":
        primitive.presentation_data_value_list = primitive.presentation_data_value_list * 2
    assert decode_store_response(primitive) is None


def test_only_our_hardened_providers_take_the_short_way() -> None:
    association = Association(AE(), "requestor")
    assert type(association.dimse) is HardenedDIMSE
    expect_store_responses(association)
    assert type(association.dimse) is StoreResponseDIMSE
    expect_store_responses(association)  # twice is harmless
    assert type(association.dimse) is StoreResponseDIMSE


def test_a_plain_response_is_queued_and_anything_else_decoded_by_pynetdicom() -> None:
    association = Association(AE(), "requestor")
    expect_store_responses(association)
    dimse = association.dimse
    dimse.receive_primitive(_p_data(encode_command(PLAIN)))
    context_id, response = dimse.msg_queue.get_nowait()
    assert (context_id, response.Status, response.MessageIDBeingRespondedTo) == (3, 0, 7)
    dimse.receive_primitive(_p_data(encode_command({**PLAIN, "ErrorComment": "disk full"})))
    _, response = dimse.msg_queue.get_nowait()
    assert (response.Status, response.ErrorComment) == (0x0000, "disk full")
