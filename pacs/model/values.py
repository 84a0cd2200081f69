"""Normal forms of stored values, shared by ingest (writing) and matching (querying).

Room: model/. Standard library only. A normal form sorts correctly as text, so range
matching becomes a plain comparison on both SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_TIME = re.compile(r"^(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?$")
_DATETIME = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$"
)


def normalize_time(value: str) -> str:
    """TM -> 'HHMMSS.ffffff' (missing parts are zero); '' when not a valid TM."""
    match = _TIME.match(value.strip().replace(":", ""))
    if not match:
        return ""
    hours, minutes, seconds, fraction = match.groups()
    if int(hours) > 23 or int(minutes or 0) > 59 or int(seconds or 0) > 60:
        return ""
    return f"{hours}{minutes or '00'}{seconds or '00'}.{(fraction or '').ljust(6, '0')}"


def normalize_datetime(value: str, default_offset: str = "") -> str:
    """DT -> 'YYYYMMDDHHMMSS.ffffff', moved to UTC when it carries an offset; '' if invalid.

    `default_offset` (the data set's Timezone Offset From UTC) applies when the value has none.
    """
    match = _DATETIME.match(value.strip())
    if not match:
        return ""
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    offset = offset or default_offset
    try:
        moment = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            min(int(second or 0), 59),
            int((fraction or "").ljust(6, "0")),
        )
    except ValueError:
        return ""
    if offset:
        sign = -1 if offset[0] == "-" else 1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        moment = (moment - sign * delta).replace(tzinfo=UTC)
    return moment.strftime("%Y%m%d%H%M%S.%f")


def fold_name(value: str) -> str:
    """Case-folded person name, for case-insensitive PN matching."""
    return value.casefold()
