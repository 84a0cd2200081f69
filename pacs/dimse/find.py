"""C-FIND over DIMSE (PS3.4 C.4.1) and the C-FIND SOP Class Extended Negotiation (C.5.1.1).

Room: dimse/. Imports services/ (the find use case), model/ (models, statuses), dimse/events
and dimse/searches. Event in -> permission -> services.find -> dimse/searches streams one
Pending response per match, checking for C-CANCEL between them; a `DicomError` becomes its
status, anything else 0xC000.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from pydicom.dataset import Dataset

from pacs.dimse.events import require_permission
from pacs.dimse.searches import stream_search
from pacs.model.levels import FIND_SOP_CLASSES, model_for_sop_class
from pacs.model.status import DicomError, FindStatus
from pacs.services.context import Services
from pacs.services.find import FindFeatures, Search, start_search

log = logging.getLogger("pacs.find")

# The sub-fields of the service-class-application-information (C.5.1.1.2), in byte order:
# the first ones we accept when offered, then those we always decline.
EXTENDED_NEGOTIATION_ACCEPTED: tuple[str, ...] = (
    "Relational queries",
    "Date-time matching (combined)",
    "Fuzzy semantic matching of person names",
    "Timezone query adjustment",
)
EXTENDED_NEGOTIATION_DECLINED: tuple[str, ...] = ("Enhanced Multi-Frame Image Conversion",)
_SUPPORTED_BYTES = len(EXTENDED_NEGOTIATION_ACCEPTED)
_MAX_BYTES = _SUPPORTED_BYTES + len(EXTENDED_NEGOTIATION_DECLINED)


def features_from_bytes(info: bytes | None) -> FindFeatures:
    """The options a service-class-application-information field switches on."""
    flags = [bool(b == 1) for b in (info or b"")[:_SUPPORTED_BYTES]]
    flags += [False] * (_SUPPORTED_BYTES - len(flags))
    return FindFeatures(*flags)


def accepted_info(offered: bytes) -> bytes:
    """Our answer to an offered field: the same length (at most 5), 1 where we agree."""
    answer = bytes(1 if i < _SUPPORTED_BYTES and b == 1 else 0
                   for i, b in enumerate(offered[:_MAX_BYTES]))
    return answer or b"\x00"


def handle_sop_extended(event: Any, services: Services) -> dict[str, bytes]:
    """EVT_SOP_EXTENDED: answer the items of our C-FIND SOP classes; omit the others."""
    answers = {}
    for sop_class, info in (event.app_info or {}).items():
        if str(sop_class) in FIND_SOP_CLASSES:
            answers[sop_class] = accepted_info(bytes(info or b""))
    return answers


def negotiated(event: Any, sop_class: str) -> FindFeatures:
    """The options we accepted for this SOP class when the association was negotiated."""
    try:
        accepted = event.assoc.acceptor.sop_class_extended
    except AttributeError:
        return FindFeatures()
    return features_from_bytes(accepted.get(sop_class))


def handle_find(event: Any, services: Services) -> Iterator[tuple[Any, Dataset | None]]:
    """EVT_C_FIND on a Query/Retrieve model: (status, identifier) per match, then the end."""
    sop_class = str(event.context.abstract_syntax)

    def open_search(fields: dict[str, Any]) -> Search:
        require_permission(event, services, "find", FindStatus.NOT_AUTHORIZED)
        model = model_for_sop_class(sop_class)
        if model is None or sop_class not in FIND_SOP_CLASSES:
            raise DicomError(FindStatus.UNABLE_TO_PROCESS, f"{sop_class} is not a C-FIND model")
        try:
            identifier = event.identifier
        except Exception as exc:  # pydicom raises many types for undecodable bytes
            raise DicomError(FindStatus.IDENTIFIER_DOES_NOT_MATCH_SOP_CLASS,
                             f"identifier cannot be decoded: {exc}") from None
        search = start_search(services, model, identifier, negotiated(event, sop_class))
        fields.update(model=model.name, level=search.level)
        if search.lenient_keys:
            fields["lenient"] = ",".join(search.lenient_keys)
        return search

    yield from stream_search(event, services, FindStatus, open_search, log, "C-FIND",
                             "matches", log_refusals=True)
