"""Sending a DIMSE request whose data set bytes are given raw, for identifiers that no encoder
would write (an element announcing more bytes than it carries)."""

from __future__ import annotations

from io import BytesIO
from typing import Any

from pynetdicom.dimse_primitives import C_FIND

from pacs.dimse.destination import park_reactor


def send_raw_c_find(assoc: Any, sop_class: str, identifier: bytes, timeout: float = 30) -> int:
    """Send a C-FIND with `identifier` as its bytes; the status of the final response."""
    context = next(cx for cx in assoc.accepted_contexts if cx.abstract_syntax == sop_class)
    request = C_FIND()
    request.MessageID = 1
    request.AffectedSOPClassUID = sop_class
    request.Priority = 2
    request.Identifier = BytesIO(identifier)
    assert park_reactor(assoc)
    try:
        assoc.dimse.send_msg(request, context.context_id)
        while True:
            _, response = assoc.dimse.msg_queue.get(timeout=timeout)
            if response is None:
                raise AssertionError("association closed")
            status = int(response.Status)
            if status not in (0xFF00, 0xFF01):
                return status
    finally:
        assoc._reactor_checkpoint.set()
