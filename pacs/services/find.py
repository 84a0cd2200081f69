"""The find use case (PS3.4 C.4.1): a request identifier in, response identifiers streamed out.

Room: services/. Imports model/ (identifier validation, matching, statuses), index/ (the query)
and the Services container; no protocol. A C-FIND and a QIDO-RS search both come through here:
the face supplies the identifier, the options it negotiated and how to notice a cancel.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass

from pydicom.dataset import Dataset

from pacs.index.query import Extra, FindQuery
from pacs.index.records import IndexUnavailable
from pacs.model.identifier import FindRequest, parse_request
from pacs.model.levels import InformationModel
from pacs.model.matching import TIMEZONE_COLUMN, constraints, descendant_match
from pacs.model.predicates import MatchOptions
from pacs.model.responses import ResponseBuilder, response_keys
from pacs.model.status import DicomError, FindStatus
from pacs.services.context import Services

log = logging.getLogger("pacs.find")
# Matches read ahead to check the cap from the statement that streams them; past this many
# the cap is checked by counting instead (no more rows held than one cursor batch).
READ_AHEAD = 500


@dataclass(frozen=True)
class FindFeatures:
    """The optional C-FIND behaviours a client asked for and we agreed to (PS3.4 C.5.1.1)."""

    relational: bool = False
    combined_datetime: bool = False
    fuzzy_names: bool = False
    timezone: bool = False


class Search:
    """One validated request whose matches are counted and ready to stream."""

    def __init__(self, services: Services, request: FindRequest, query: FindQuery,
                 rows: Generator[dict[str, str], None, None] | None = None):
        self.services = services
        self.request = request
        self.query = query
        self.matches = 0
        self.cancelled = False
        self._rows = rows  # already running (the cap was checked on its first rows)

    @property
    def level(self) -> str:
        """The Query/Retrieve Level of the request."""
        return self.request.level

    @property
    def lenient_keys(self) -> tuple[str, ...]:
        """Keys answered only because `query.strict_hierarchy` is off (for the log line)."""
        return self.request.lenient

    @property
    def pending_status(self) -> int:
        """0xFF00, or 0xFF01 when some requested optional keys are not supported."""
        return int(self.request.pending_status)

    def responses(self, is_cancelled: Callable[[], bool] = lambda: False) -> Iterator[Dataset]:
        """One response identifier per matching entity, streamed from a cursor.

        `is_cancelled` is asked before each response; when it says so the stream ends and
        `cancelled` is set.
        """
        settings = self.services.settings
        builder = ResponseBuilder(self.request, settings.ae_title, settings.pn_case_insensitive)
        rows, self._rows = self._rows or self.query.rows(), None
        try:
            for row in rows:
                if is_cancelled():
                    self.cancelled = True
                    return
                yield builder.build(row)
                self.matches += 1
        except IndexUnavailable as exc:
            log.error("C-FIND: %s", exc)
            raise DicomError(FindStatus.OUT_OF_RESOURCES, "index unavailable") from exc
        finally:
            rows.close()  # the cursor and its read transaction end with the stream


def find_query(request: FindRequest, options: MatchOptions) -> FindQuery:
    """The index query of a validated request: its keys' predicates, those of the keys below
    the level on the entity's descendants, and the columns its responses need."""
    extras = [Extra("TimezoneOffsetFromUTC", "STUDY", TIMEZONE_COLUMN)] \
        if request.want_timezone and request.level != "PATIENT" else []
    predicates = constraints(request.values, options)
    below = descendant_match(request.level, request.model.levels_below(request.level),
                             request.below, options)
    return FindQuery(request.level, predicates + ([below] if below is not None else []),
                     response_keys(request), extras)


def start_search(services: Services, model: InformationModel, identifier: Dataset,
                 features: FindFeatures, enforce_cap: bool = True) -> Search:
    """Validate `identifier` against `model`, build the query and check the match cap.

    Raises DicomError with the PS3.4 status for an invalid identifier (0xA900, 0xC000 family)
    or more matches than `query.max_results` (0xA700). A face that pages its answer itself
    (QIDO-RS limit/offset) passes `enforce_cap=False` and reads only the page it sends.
    """
    settings = services.settings
    request = parse_request(identifier, model, relational=features.relational,
                            strict=settings.strict_hierarchy)
    options = MatchOptions(
        pn_case_insensitive=settings.pn_case_insensitive,
        fuzzy_names=features.fuzzy_names,
        combined_datetime=features.combined_datetime,
        timezone=request.timezone if features.timezone else "",
    )
    query = find_query(request, options)
    if not enforce_cap:
        return Search(services, request, query)
    cap = settings.max_find_results
    # One statement per C-FIND: the cap is checked on the first rows of the cursor that then
    # streams them; only a search with more than READ_AHEAD matches is counted apart.
    rows = query.rows()
    try:
        ahead = list(itertools.islice(rows, min(cap + 1, READ_AHEAD)))
        if len(ahead) == READ_AHEAD <= cap:
            over_cap = query.count(cap + 1) > cap
        else:
            over_cap = len(ahead) > cap
    except IndexUnavailable as exc:
        rows.close()
        log.error("C-FIND: %s", exc)
        raise DicomError(FindStatus.OUT_OF_RESOURCES, "index unavailable") from exc
    if over_cap:
        rows.close()
        raise DicomError(FindStatus.OUT_OF_RESOURCES, f"more than {cap} matches; narrow the query")
    return Search(services, request, query, _after(ahead, rows))


def _after(ahead: list[dict[str, str]], rows: Generator[dict[str, str], None, None]
           ) -> Generator[dict[str, str], None, None]:
    """The rows read ahead, then the rest of the cursor (closed when this is)."""
    try:
        yield from ahead
        yield from rows
    finally:
        rows.close()
