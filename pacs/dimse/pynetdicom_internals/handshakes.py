"""Association set-up remembered: an A-ASSOCIATE-RQ seen before is not decoded again, a
proposal negotiated before is not negotiated again, an A-ASSOCIATE-AC sent before is not
encoded again.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included) and
the standard library; nothing else of ours.

Why: a modality or viewer sends the same A-ASSOCIATE-RQ, byte for byte, every time it
connects; getscu proposes some 120 SOP classes, each with its transfer syntaxes and an SCP/SCU
Role Selection item (PS3.7 D.3.3.4). Measured on a getscu request (17 KB): decoding it into
pynetdicom's PDU items and primitives took about half of the server's CPU for the
association, negotiating a tenth, building and encoding the A-ASSOCIATE-AC a fifth.

What is remembered, and why it is exact:
- Decoding (`RememberedAssociateRQ`): keyed by the whole PDU's bytes (called and calling AE
  titles, maximum PDU, role selection and extended negotiation items included), so a hit
  decodes to exactly what pynetdicom decoded. Each association gets its own A-ASSOCIATE
  primitive and lists; the items in them (presentation contexts, negotiation items) are
  shared, and nothing changes them after decoding. A request with a User Identity item is
  never remembered (credentials stay out of memory, and its handler decides each time);
  neither is one over `LARGEST_REMEMBERED` bytes.
- Negotiation (`remembered_negotiation`): pynetdicom's own `negotiate_as_acceptor`, called
  once per remembered request and per set of supported contexts (the cache lives on the
  server's `SharedContexts`, so a server built from another configuration starts empty). Its
  inputs are the proposed contexts and roles, both decoded from the key's bytes, and our
  supported contexts; its results (accepted contexts, role replies) are shared read-only.
  The checks around it (calling and called AE titles, the association limit, user identity,
  extended negotiation handlers) still run for every association.
- Encoding (`remembered_associate_ac`): keyed by every value the A-ASSOCIATE-AC carries (AE
  titles, application context, each context's ID, result and transfer syntax, and every
  attribute of every user information item); a primitive with an item whose values cannot
  be compared goes pynetdicom's way.
Each table is bounded (`_LIMIT` entries; past it the oldest go). Over TLS the bytes are the
same once decrypted, so the tables serve TLS associations too.
"""

from __future__ import annotations

import threading
from typing import Any

from pynetdicom import acse as _acse_module
from pynetdicom import dul as _dul_module
from pynetdicom import fsm as _fsm_module
from pynetdicom import pdu as _pdu_module
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RQ, UserInformationItem
from pynetdicom.pdu_items import UserIdentitySubItemRQ

# A request larger than this is decoded every time (getscu's is ~17 KB, ~190 KB decoded): with
# the limit below, what peers that are never accepted can make us hold stays under ~20 MB.
LARGEST_REMEMBERED = 32 * 1024
_LIMIT = 32  # entries per table: distinct (peer, proposal) pairs of one server


class _Table:
    """A bounded dict, safe to share between association threads; the oldest go first."""

    def __init__(self) -> None:
        self._entries: dict[Any, Any] = {}
        self._lock = threading.Lock()
        self.hits = 0  # for tests and profiles; not locked, so a count, not an audit

    def get(self, key: Any) -> Any:
        """The value for `key`, or None."""
        found = self._entries.get(key)
        if found is not None:
            self.hits += 1
        return found

    def put(self, key: Any, value: Any) -> None:
        """Remember `value` for `key`, dropping the oldest entry when full."""
        with self._lock:
            if len(self._entries) >= _LIMIT and key not in self._entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)


_NEGOTIATED_HITS = [0]  # the negotiation tables live on each server's contexts


def remembered_counts() -> dict[str, int]:
    """How often a request was found decoded, a negotiation done, an A-ASSOCIATE-AC encoded."""
    return {"decoded": _DECODED.hits, "negotiated": _NEGOTIATED_HITS[0],
            "encoded": _ENCODED.hits}


class ProposedContexts(list):  # type: ignore[type-arg]
    """The presentation contexts of a remembered A-ASSOCIATE-RQ; `key` names the request."""

    key: bytes = b""


# --- decoding ---------------------------------------------------------------------------------

_DECODED = _Table()  # PDU bytes -> (decoded A_ASSOCIATE_RQ, its A_ASSOCIATE primitive)


def _has_user_identity(pdu: A_ASSOCIATE_RQ) -> bool:
    return any(isinstance(sub_item, UserIdentitySubItemRQ)
               for item in pdu.variable_items if isinstance(item, UserInformationItem)
               for sub_item in item.user_data)


class RememberedAssociateRQ(A_ASSOCIATE_RQ):
    """pynetdicom's A-ASSOCIATE-RQ PDU; one whose bytes were decoded before takes that result
    (see the module docstring)."""

    _key: bytes | None = None
    _remembered: Any = None

    def decode(self, bytestream: bytes | bytearray) -> None:
        """Decode `bytestream`, or take the items of the same bytes decoded before."""
        if len(bytestream) > LARGEST_REMEMBERED:
            super().decode(bytestream)
            return
        key = bytes(bytestream)
        found = _DECODED.get(key)
        if found is None:
            super().decode(key)
            if not _has_user_identity(self):
                self._key = key
            return
        decoded, self._remembered = found
        self.protocol_version = decoded.protocol_version
        self._called_aet = decoded._called_aet
        self._calling_aet = decoded._calling_aet
        self.variable_items = decoded.variable_items

    def to_primitive(self) -> Any:
        """The A-ASSOCIATE (request) primitive: this association's own, with the shared items
        of a remembered request."""
        remembered = self._remembered
        if remembered is None:
            primitive = super().to_primitive()
            if self._key is not None:  # the first of these bytes: remember them
                contexts = ProposedContexts(primitive.presentation_context_definition_list)
                contexts.key = self._key
                primitive._presentation_context_definition_list = contexts
                _DECODED.put(self._key, (self, _copy_primitive(primitive)))
            return primitive
        return _copy_primitive(remembered)


def _copy_primitive(primitive: Any) -> Any:
    """A new primitive with the same values and its own lists (the items in them shared)."""
    copied = object.__new__(type(primitive))
    copied.__dict__.update(primitive.__dict__)
    contexts = ProposedContexts(primitive._presentation_context_definition_list)
    contexts.key = getattr(primitive._presentation_context_definition_list, "key", b"")
    copied._presentation_context_definition_list = contexts
    copied._user_information = list(primitive._user_information)
    return copied


# --- negotiation ----------------------------------------------------------------------------------

_TABLE_ATTRIBUTE = "minipacs_negotiated"
_outer_negotiate_as_acceptor = _acse_module.negotiate_as_acceptor


def remembered_negotiation(rq_contexts: Any, ac_contexts: Any, roles: Any = None) -> Any:
    """acse.negotiate_as_acceptor, once per remembered request and set of supported contexts
    (the server's `SharedContexts`, which carries the table); otherwise as before."""
    key = getattr(rq_contexts, "key", b"")
    table = getattr(ac_contexts, "__dict__", {}).get(_TABLE_ATTRIBUTE) if key else None
    if key and table is None and hasattr(ac_contexts, "for_syntaxes"):
        table = ac_contexts.__dict__.setdefault(_TABLE_ATTRIBUTE, _Table())
    if table is None:
        return _outer_negotiate_as_acceptor(rq_contexts, ac_contexts, roles)
    found = table.get(key)
    if found is None:
        found = _outer_negotiate_as_acceptor(rq_contexts, ac_contexts, roles)
        table.put(key, found)
    else:
        _NEGOTIATED_HITS[0] += 1
    results, replies = found
    return list(results), list(replies)


# --- encoding -------------------------------------------------------------------------------------

_ENCODED = _Table()  # what the A-ASSOCIATE-AC carries -> the PDU, encoded once


def _fingerprint(primitive: Any) -> tuple[Any, ...] | None:
    """Every value A_ASSOCIATE_AC takes from `primitive`, hashable; None when one is not."""
    try:
        contexts = tuple(
            (cx.context_id, cx.result, cx.transfer_syntax[0] if cx.transfer_syntax else None)
            for cx in primitive.presentation_context_definition_results_list)
        items = tuple((type(item), tuple(item.__dict__.items()))
                      for item in primitive.user_information)
        key = (primitive.called_ae_title, primitive.calling_ae_title,
               primitive.application_context_name, primitive.result, contexts, items)
        hash(key)
    except (TypeError, AttributeError):
        return None
    return key


def remembered_associate_ac(primitive: Any) -> A_ASSOCIATE_AC:
    """The A-ASSOCIATE-AC PDU for `primitive` (fsm's AE-7 builds it so); one carrying the same
    values as an earlier one is that PDU, whose `encode` gives the bytes encoded then. (Still
    an A_ASSOCIATE_AC: whatever looks at the PDU sent sees pynetdicom's own class.)"""
    key = _fingerprint(primitive)
    if key is None:
        return A_ASSOCIATE_AC(primitive)
    pdu = _ENCODED.get(key)
    if pdu is None:
        pdu = A_ASSOCIATE_AC(primitive)
        encoded = pdu.encode()
        pdu.encode = lambda: encoded  # type: ignore[method-assign]
        _ENCODED.put(key, pdu)
    return pdu


def install_handshake_hooks() -> tuple[str, ...]:
    """Put the remembering decode, negotiation and encode in place (after the message hooks,
    whose negotiation this wraps); what they replace, for the record."""
    global _outer_negotiate_as_acceptor
    _outer_negotiate_as_acceptor = _acse_module.negotiate_as_acceptor
    _acse_module.negotiate_as_acceptor = remembered_negotiation  # type: ignore[attr-defined]
    # The PDU type byte is looked up by class: the subclass is its parent's type.
    _pdu_module.PDU_TYPES[RememberedAssociateRQ] = _pdu_module.PDU_TYPES[A_ASSOCIATE_RQ]
    _, event = _dul_module._PDU_TYPES[b"\x01"]
    _dul_module._PDU_TYPES[b"\x01"] = (RememberedAssociateRQ, event)
    _fsm_module.A_ASSOCIATE_AC = remembered_associate_ac  # type: ignore[attr-defined,misc]
    return ("pdu.PDU_TYPES (a subclass)", "dul._PDU_TYPES[A-ASSOCIATE-RQ]",
            "acse.negotiate_as_acceptor (remembered)", "fsm.A_ASSOCIATE_AC")
