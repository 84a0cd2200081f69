"""Every pynetdicom internal that minipacs replaces or tunes, named in this one package.

Room: dimse/. Imports pynetdicom, its private names included (this package is where they may
appear), the standard library and its own modules: `connection` (transport, DUL, state machine,
logging), `messages` (DIMSE, reactor parking, servers), `commands` (command sets and raw data
sets as the fast paths write them), `reactors` (the event-driven DUL loop and association
reactor), `receiving` and `sending` (the receive and send fast paths), `servers` (the accepting
servers: TLS handshake, accept loop), `serving` (C-STORE requests served in the DUL thread),
`direct` (C-FIND served without pynetdicom's service class), `handshakes` (association
set-up remembered), `store_responses` (our C-STORE
sub-operations' responses), `uids` (UID checks remembered). The rest of dimse/ calls the
functions exported here instead of touching pynetdicom's private attributes. Written for, and
checked at import against, one pynetdicom version (`PINNED_VERSION`, pinned in setup.cfg),
before anything is subclassed; tests/test_pynetdicom_internals.py fails when a name used here
moves.

What is tuned, and why (PS3.8 9.2 is the state machine these hooks keep to):
- Configuration: received data sets stream to files (`_config`), and no per-PDU logging.
- Threads (`reactors`): pynetdicom's DUL and association reactor poll, sleeping 1 ms per
  loop; here the DUL blocks in select() on its socket and a wake-up fd, the reactor on a
  doorbell its queues ring. No sleep loops: an idle association costs nothing.
- Transport: `AssociationSocket.recv` refuses absurd PDU lengths and waits for the rest of a
  PDU no longer than the ARTIM timer (no association yet) or the network timeout (then an
  A-ABORT); `send` waits no longer than the network timeout. Stock pynetdicom blocks forever.
  What we send counts as network activity too (stock pynetdicom counts only what it receives,
  so a handler slower than the network timeout got its association aborted once it answered).
- DUL (`HardenedDUL`): when its thread ends, whoever waits for an ACSE primitive wakes at once
  (a connection closed before its A-ASSOCIATE-RQ held its slot for the ACSE timeout); in
  Sta13 what the peer still sends is discarded unparsed (after bytes that are not PDUs there
  is no framing left: stock pynetdicom answered every 6 bytes with an A-ABORT and a log line,
  and blocked on a partial "PDU"); one log line per broken connection, at its end.
- State machine (`GuardedStateMachine`): an exception in an action ends the connection
  instead of killing the DUL thread with a traceback and leaving the socket unread.
- DIMSE (`HardenedDIMSE`): a command set pynetdicom cannot decode (no Command Field, no
  Affected SOP Instance UID, ...), fragments out of order (PS3.8 E.2) or a message that is
  neither a valid request nor a valid response end the association with an A-ABORT
  (PS3.8 AA-8) and leave no partial file; a response the C-MOVE/C-GET handler has already
  sent itself can be dropped (see dimse/retrieve.py).
- Reactor parking for our own C-STORE sub-operations (see dimse/destination.py).
- A C-STORE request on an association we accepted is served by pynetdicom's Storage service
  class in the DUL thread that completed it, when the reactor is idle (`DimseQueue`): no
  hand-off to the reactor thread and back for each store.
- Receiving (`receiving`): a C-STORE request's data set fragments go from one reused buffer
  straight into its file, hashed as they arrive (the store pipeline takes that hash instead
  of reading the file back); every other PDU, and TLS, is pynetdicom's.
- Servers: no forced full garbage collection in the accept loop (`service_actions`).
- Requests served directly (`direct`): a C-FIND on a plain socket goes from the reactor to our
  handler without pynetdicom's service class, Event and trailing final response.
- Association set-up (`reactors`, `messages`): the DUL thread starts from the accepting thread
  (it reads the A-ASSOCIATE-RQ while the association's thread starts); negotiation looks only
  at our contexts of the requested abstract syntaxes; the A-ASSOCIATE-AC and A-RELEASE-RP go
  out from the thread that decided them, under the DUL's per-round lock.
- Association set-up remembered (`handshakes`): an A-ASSOCIATE-RQ whose bytes were seen
  before is not decoded again, its negotiation (pynetdicom's) not run again, and an
  A-ASSOCIATE-AC carrying the same values not encoded again (bounded tables; the AE title,
  association limit and user identity checks still run every time).
- UID checks (`uids`): pynetdicom's `set_uid` and `validate_uid` and pydicom's
  `UID.is_valid` remember the UIDs they checked (three regular expressions per UID, every
  time, were a quarter of a C-GET's CPU: getscu proposes some 120 SOP classes).
- C-STORE responses to our own sub-operations (`store_responses`): a plain C-STORE-RSP is
  decoded from its few bytes instead of through a pydicom Dataset and a validated primitive
  (a third of a C-MOVE's CPU); anything else goes pynetdicom's way.
- Sending (`sending`): C-STORE sub-operations, C-MOVE/C-GET responses and C-FIND Pending
  responses go straight to the socket (PDU headers built per fragment, payload as
  memoryview slices to sendmsg) under a per-association send lock that pynetdicom's own
  writes take too; pynetdicom's path stays the fallback (TLS, anything queued).
- TLS (`DeferredHandshakeServer`): the handshake happens in the connection's own thread,
  bounded by the ACSE timeout, not in the accepting thread, where one silent client stopped
  every other TLS client from being accepted.
"""

from __future__ import annotations

import importlib
import socket as _socket
from typing import Any

import pynetdicom
from pynetdicom import AE, _config
from pynetdicom import ae as _ae_module
from pynetdicom import association as _association_module
from pynetdicom import dimse_messages as _dimse_messages_module
from pynetdicom import dimse_primitives as _dimse_primitives_module
from pynetdicom import fsm as _fsm_module
from pynetdicom import pdu_items as _pdu_items_module
from pynetdicom import pdu_primitives as _pdu_primitives_module
from pynetdicom import presentation as _presentation_module
from pynetdicom import utils as _utils_module
from pynetdicom.association import Association
from pynetdicom.dimse_messages import DIMSEMessage
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ
from pynetdicom.pdu_items import UserInformationItem
from pynetdicom.pdu_primitives import A_ASSOCIATE, P_DATA
from pynetdicom.service_class import StorageServiceClass
from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

PINNED_VERSION = "3.0.4"

# Every pynetdicom name this package hooks or reads, by owner; checked at import. Instance
# attributes are looked for on a probe association, before any of it is replaced.
REQUIRED_NAMES: dict[str, tuple[str, ...]] = {
    "association module": ("DULServiceProvider", "DIMSEServiceProvider"),
    "DULServiceProvider": ("run_reactor", "receive_pdu", "_is_transport_event", "_read_pdu_data",
                           "_send", "network_timeout", "artim_timer", "_process_recv_primitive",
                           "state_machine", "socket", "to_user_queue", "to_provider_queue",
                           "event_queue", "assoc", "_idle_timer", "_kill_thread", "kill_dul",
                           "stop_dul", "idle_timer_expired"),
    "StateMachine": ("do_action", "current_state", "dul"),
    "DIMSEServiceProvider": ("receive_primitive", "send_msg", "get_msg", "message", "msg_queue",
                             "dul", "maximum_pdu_size", "cancel_req"),
    "DIMSEMessage": ("context_id", "_data_set_file", "_data_set_path", "data_set",
                     "command_set"),
    "C_STORE_RQ": ("message_to_primitive",),
    "C_STORE": ("_dataset_path", "_dataset_file", "_context_id", "_affected_sop_class_uid",
                "msg_type", "is_valid_request", "is_valid_response", "DataSet", "MessageID",
                "Priority", "AffectedSOPInstanceUID", "AffectedSOPClassUID"),
    "AssociationSocket": ("recv", "send", "ready", "close", "socket", "assoc", "_is_connected"),
    "ThreadedAssociationServer": ("get_request", "ssl_context", "shutdown_request",
                                  "service_actions"),
    "RequestHandler": ("handle", "ae"),
    "Association": ("abort", "kill", "release", "is_acceptor", "_reactor_checkpoint",
                    "_is_paused", "dul", "dimse", "acse", "requestor", "acceptor", "_run_reactor",
                    "_kill", "_dul_ready", "_serve_request", "network_timeout_response",
                    "is_established", "is_released", "is_aborted", "_sent_release",
                    "_accepted_cx", "ae", "_started_dul"),
    "ACSE": ("is_release_requested", "is_aborted", "send_release"),
    "ServiceUser": ("ae_title", "address_info", "primitive"),
    "ServiceUser class": ("accepted_common_extended",),
    "StorageServiceClass": ("SCP",),
    "AE": ("_servers",),
    "Timer": ("remaining", "timeout", "expired", "_start_time", "_end_time"),
    "fsm module": ("ACTIONS", "DT_1", "A_ASSOCIATE_AC"),
    "dimse_messages module": ("create_file_meta", "write_file_meta_info", "NamedTemporaryFile",
                              "decode"),
    "P_DATA": ("presentation_data_value_list",),
    "utils module": ("set_uid", "validate_uid"),
    "ae module": ("set_uid",),
    "dimse_primitives module": ("set_uid",),
    "pdu_items module": ("set_uid", "validate_uid"),
    "pdu_primitives module": ("set_uid", "validate_uid"),
    "presentation module": ("set_uid", "validate_uid"),
    "acse module": ("negotiate_as_acceptor",),  # negotiation over our requested contexts
    # Association set-up remembered (handshakes.py).
    "dul module": ("_PDU_TYPES",),
    "pdu module": ("PDU_TYPES",),
    "A_ASSOCIATE_RQ": ("decode", "to_primitive", "variable_items", "protocol_version",
                       "_called_aet", "_calling_aet"),
    "A_ASSOCIATE": ("_presentation_context_definition_list", "_user_information",
                    "presentation_context_definition_results_list", "user_information",
                    "called_ae_title", "calling_ae_title", "application_context_name",
                    "result"),
    "A_ASSOCIATE_AC": ("encode", "from_primitive"),
    "UserInformationItem": ("user_data",),
}
# The PS3.8 transitions the hooks rely on: (event, state) -> action, as pynetdicom maps them.
REQUIRED_TRANSITIONS = {
    ("Evt17", "Sta2"): "AA-5", ("Evt18", "Sta2"): "AA-2", ("Evt19", "Sta2"): "AA-1",
    ("Evt17", "Sta6"): "AA-4", ("Evt19", "Sta6"): "AA-8",
    ("Evt17", "Sta13"): "AR-5", ("Evt18", "Sta13"): "AA-2", ("Evt9", "Sta6"): "DT-1",
}


def _probes() -> dict[str, Any]:
    """One object of each kind REQUIRED_NAMES speaks of (no thread started, no socket)."""
    association = Association(AE(), "acceptor")
    socket = AssociationSocket(association, client_socket=_socket.socket())
    socket.socket.close()  # type: ignore[union-attr]
    return {
        "association module": _association_module, "DULServiceProvider": association.dul,
        "StateMachine": association.dul.state_machine, "DIMSEServiceProvider": association.dimse,
        "DIMSEMessage": DIMSEMessage(), "C_STORE": C_STORE(), "AssociationSocket": socket,
        "Association": association, "ServiceUser": association.requestor, "AE": association.ae,
        "ACSE": association.acse, "ServiceUser class": type(association.requestor),
        "StorageServiceClass": StorageServiceClass,
        "C_STORE_RQ": _dimse_messages_module.C_STORE_RQ,
        "Timer": association.dul.artim_timer, "RequestHandler": RequestHandler,
        "ThreadedAssociationServer": ThreadedAssociationServer, "fsm module": _fsm_module,
        "dimse_messages module": _dimse_messages_module, "utils module": _utils_module,
        "P_DATA": P_DATA(),
        "ae module": _ae_module, "dimse_primitives module": _dimse_primitives_module,
        "pdu_items module": _pdu_items_module, "pdu_primitives module": _pdu_primitives_module,
        "presentation module": _presentation_module,
        "acse module": importlib.import_module("pynetdicom.acse"),
        "dul module": importlib.import_module("pynetdicom.dul"),
        "pdu module": importlib.import_module("pynetdicom.pdu"),
        "A_ASSOCIATE_RQ": A_ASSOCIATE_RQ(), "A_ASSOCIATE": A_ASSOCIATE(),
        "A_ASSOCIATE_AC": A_ASSOCIATE_AC(), "UserInformationItem": UserInformationItem(),
    }


def check_pynetdicom(version: str = pynetdicom.__version__,
                     probes: dict[str, Any] | None = None) -> list[str]:
    """What differs from the pynetdicom this package was written for (empty: nothing)."""
    problems = [] if version == PINNED_VERSION else [
        f"pynetdicom {version} is installed, minipacs is written for {PINNED_VERSION}"]
    probes = _probes() if probes is None else probes
    for owner, names in REQUIRED_NAMES.items():
        problems += [f"{owner}.{name} is gone" for name in names
                     if not hasattr(probes[owner], name)]
    table = getattr(_fsm_module, "TRANSITION_TABLE", {})
    problems += [f"PS3.8 transition {key} is no longer {action}"
                 for key, action in REQUIRED_TRANSITIONS.items() if table.get(key) != action]
    return problems


if _problems := check_pynetdicom():
    raise ImportError("pacs.dimse needs another pynetdicom: " + "; ".join(_problems))

# Imported only once the check has passed: they subclass what it checked.
from pacs.dimse.pynetdicom_internals.commands import (  # noqa: E402
    DATA_SET_PRESENT,
    NO_DATA_SET,
    encode_command,
)
from pacs.dimse.pynetdicom_internals.connection import (  # noqa: E402
    PDU_LENGTH_LIMIT,
    awaiting_request,
    close_transport,
    describe,
    install_connection_hooks,
    raw_socket,
    received_digest,
)
from pacs.dimse.pynetdicom_internals.direct import (  # noqa: E402
    DirectEvent,
    is_direct,
    serve_directly,
)
from pacs.dimse.pynetdicom_internals.handshakes import (  # noqa: E402
    install_handshake_hooks,
    remembered_counts,
)
from pacs.dimse.pynetdicom_internals.messages import (  # noqa: E402
    SharedContexts,
    association_alive,
    drop_response,
    give_back_messages,
    install_message_hooks,
    next_message,
    outgoing_pending,
    park_reactor,
    register_server,
    take_message_entry,
    unpark_reactor,
)
from pacs.dimse.pynetdicom_internals.reactors import (  # noqa: E402
    install_reactor_hooks,
    start_reading_early,
)
from pacs.dimse.pynetdicom_internals.receiving import install_receiving_hooks  # noqa: E402
from pacs.dimse.pynetdicom_internals.sending import (  # noqa: E402
    FindResponses,
    install_sending_hooks,
    send_message,
    send_primitive,
)
from pacs.dimse.pynetdicom_internals.servers import (  # noqa: E402
    DeferredHandshakeServer,
    install_server_hooks,
)
from pacs.dimse.pynetdicom_internals.serving import answer_store  # noqa: E402
from pacs.dimse.pynetdicom_internals.store_responses import expect_store_responses  # noqa: E402
from pacs.dimse.pynetdicom_internals.uids import install_uid_hooks  # noqa: E402

__all__ = [
    "PDU_LENGTH_LIMIT", "PINNED_VERSION", "DeferredHandshakeServer",
    "SharedContexts", "association_alive", "awaiting_request", "check_pynetdicom",
    "close_transport", "describe", "drop_response", "next_message", "outgoing_pending",
    "park_reactor", "raw_socket", "received_digest", "register_server", "unpark_reactor",
    "give_back_messages", "take_message_entry",
    "FindResponses", "encode_command", "send_message", "send_primitive",
    "DATA_SET_PRESENT", "NO_DATA_SET", "expect_store_responses",
    "DirectEvent", "is_direct", "serve_directly", "start_reading_early", "answer_store",
    "remembered_counts",
]

# Received data sets stream to a temp file instead of memory (handlers use dataset_path).
_config.STORE_RECV_CHUNKED_DATASET = True
# Log the association's identity, not every PDU.
_config.LOG_HANDLER_LEVEL = "none"
# pynetdicom walks every response identifier for a debug line nobody prints (~150 us each),
# and decodes and walks every request identifier for INFO lines we do not print either
# (pynetdicom logs from WARNING unless --log-level DEBUG): ~0.15 ms of each C-FIND.
_config.LOG_RESPONSE_IDENTIFIERS = False
_config.LOG_REQUEST_IDENTIFIERS = False
INSTALLED = ("_config.STORE_RECV_CHUNKED_DATASET", "_config.LOG_HANDLER_LEVEL",
             "_config.LOG_RESPONSE_IDENTIFIERS", "_config.LOG_REQUEST_IDENTIFIERS",
             *install_connection_hooks(), *install_server_hooks(), *install_message_hooks(),
             *install_handshake_hooks(), *install_reactor_hooks(),
             *install_sending_hooks(), *install_receiving_hooks(), *install_uid_hooks())
