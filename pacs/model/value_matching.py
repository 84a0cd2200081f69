"""Values of PS3.4 C.2.2.2 matching: wildcards, DA/TM/DT normal forms and ranges, timezone
shifts, and the Python-side matching of sequence items and fuzzy person names.

Room: model/. Imports model/values and pydicom; pure functions on text.
"""

from __future__ import annotations

import json
import re
import unicodedata
from calendar import monthrange
from datetime import datetime, timedelta

from pydicom.dataset import Dataset

from pacs.model.values import fold_name, normalize_datetime, normalize_time

LIKE_ESCAPE = "!"
WILDCARD_VRS = frozenset({"AE", "CS", "LO", "LT", "PN", "SH", "ST", "UC", "UR", "UT"})
NORMAL_DT = "%Y%m%d%H%M%S.%f"
_DATE = re.compile(r"^\d{8}$")
_DT = r"\d{4}(?:\d{2}){0,5}(?:\.\d{1,6})?(?:[+-]\d{4})?"
_DT_RANGE = re.compile(rf"^({_DT})?-({_DT})?$")
_OFFSET = re.compile(r"^[+-](?:0\d|1[0-4])[0-5]\d$")


def like_literal(text: str) -> str:
    """`text` with LIKE's `%` and `_` (and the escape character) taken literally."""
    e = LIKE_ESCAPE
    return text.replace(e, e + e).replace("%", e + "%").replace("_", e + "_")


def like_pattern(value: str) -> str:
    """A DICOM wildcard value as a LIKE pattern: `*` -> `%`, `?` -> `_`, all else literal."""
    return "".join("%" if c == "*" else "_" if c == "?" else like_literal(c) for c in value)


def _regex_literal(char: str) -> str:
    # A backslash before ASCII punctuation is a literal in Python re and PostgreSQL AREs.
    return "\\" + char if char.isascii() and not char.isalnum() else char


def multi_value_regex(value: str) -> str:
    """A wildcard value as a regular expression matching any one of backslash-separated
    values (capture-free, so PostgreSQL can run it without backtracking)."""
    body = "".join("[^\\\\]*" if c == "*" else "[^\\\\]" if c == "?" else _regex_literal(c)
                   for c in value)
    return f"^(?:.*\\\\)?{body}(?:\\\\.*)?$"


def wildcard_matches(pattern: str, text: str) -> bool:
    """Whether `text` matches the DICOM wildcard `pattern` (`*`, `?`), in O(len * len)
    time at worst: no backtracking blow-up, whatever the request holds."""
    p = t = 0
    star, resume = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, resume = p, t
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p, resume = star + 1, resume + 1
            t = resume
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def any_value_matches(pattern: str, stored: str | None) -> bool:
    """Whether one of the backslash-separated values of `stored` matches `pattern`."""
    return stored is not None and any(wildcard_matches(pattern, value)
                                      for value in stored.split("\\"))


def is_universal_wildcard(value: str) -> bool:
    """Whether a value is only `*`s: Universal Matching (PS3.4 C.2.2.2.4 note 1)."""
    return value != "" and set(value) == {"*"}


def _has_offset(value: str) -> bool:
    return len(value) > 5 and bool(_OFFSET.match(value[-5:]))


def normal_form(vr: str, value: str, timezone: str = "") -> str:
    """The comparable form of one DA, TM or DT value; ValueError when it is not one."""
    if vr == "DA":
        value = value.replace(".", "")
        if not _DATE.match(value):
            raise ValueError(f"{value!r} is not a date YYYYMMDD")
        return value
    if vr == "TM":
        normal = normalize_time(value)
    else:
        normal = normalize_datetime(value if _has_offset(value) or not timezone
                                    else value + timezone)
    if not normal:
        raise ValueError(f"{value!r} is not a valid {vr}")
    return normal


def _upper_time(value: str) -> str:
    normal_form("TM", value)  # validates
    digits, _, fraction = value.replace(":", "").partition(".")
    return (f"{digits[0:2]}{digits[2:4] or '59'}{digits[4:6] or '59'}."
            f"{fraction.ljust(6, '9')}")


def _upper_datetime(value: str) -> str:
    body, offset = (value[:-5], value[-5:]) if _has_offset(value) else (value, "")
    digits, _, fraction = body.partition(".")
    year, month = digits[0:4], digits[4:6] or "12"
    if not 1 <= int(month) <= 12:
        raise ValueError(f"{value!r} is not a valid DT")
    day = digits[6:8] or f"{monthrange(int(year), int(month))[1]:02d}"
    return (f"{year}{month}{day}{digits[8:10] or '23'}{digits[10:12] or '59'}"
            f"{digits[12:14] or '59'}.{fraction.ljust(6, '9')}{offset}")


def parse_range(vr: str, value: str, timezone: str = "") -> tuple[str | None, str | None]:
    """`a-b`, `a-` or `-b` as inclusive normal-form bounds; an upper bound given with less
    precision covers its whole unit ("-1800" includes 18:00:30). ValueError if malformed,
    including a lone `-`, which C.2.2.2.5 does not define (it would match everything)."""
    if value.strip() == "-":
        raise ValueError("'-' alone is not a range")
    if vr == "DT":
        match = _DT_RANGE.match(value)
        if not match:
            raise ValueError(f"{value!r} is not a DT range")
        low, high = match.groups()
    else:
        low, _, high = value.partition("-")
        if "-" in high:
            raise ValueError(f"{value!r} has more than one '-'")
    upper = {"DA": lambda v: v, "TM": _upper_time, "DT": _upper_datetime}[vr]
    if vr == "DT" and timezone:
        low = low if not low or _has_offset(low) else low + timezone
        high = high if not high or _has_offset(high) else high + timezone
    return (normal_form(vr, low) if low else None,
            normal_form(vr, upper(high)) if high else None)


def bounds(vr: str, value: str) -> tuple[str | None, str | None]:
    if "-" in value:
        return parse_range(vr, value)
    normal = normal_form(vr, value)
    return normal, normal


def _minutes(offset: str) -> int:
    sign = -1 if offset[0] == "-" else 1
    return sign * (int(offset[1:3]) * 60 + int(offset[3:5]))


def offset_delta(request_offset: str, stored_offset: str) -> timedelta:
    """How far the request's local clock is from the entity's (zero when it has none)."""
    if not _OFFSET.match(stored_offset or ""):
        return timedelta(0)
    return timedelta(minutes=_minutes(stored_offset) - _minutes(request_offset))


def shift_normal(moment: str | None, request_offset: str, stored_offset: str) -> str | None:
    """A normal-form date-time of the request's zone, in the entity's zone."""
    if moment is None:
        return None
    shifted = datetime.strptime(moment, NORMAL_DT) + offset_delta(request_offset, stored_offset)
    return shifted.strftime(NORMAL_DT)


# --- matching in Python: sequence items, fuzzy names --------------------------------------

def element_texts(value: object) -> tuple[str, ...]:
    """The text of each value of an element's value (PN as its full string, IS as written)."""
    if value is None or value == "":
        return ()
    values = value if isinstance(value, list | tuple) or type(value).__name__ == "MultiValue" \
        else [value]
    texts = []
    for item in values:  # type: ignore[union-attr]
        if isinstance(item, bytes):
            item = item.decode("ascii", "replace")
        original = getattr(item, "original_string", None)  # IS and DS as written
        text = original if isinstance(original, str) and type(item).__name__ in ("IS", "DSfloat",
                                                                            "DSdecimal") else item
        texts.append(str(text).strip("\x00 "))
    return tuple(texts) if any(texts) else ()


def value_matches(vr: str, stored: str, query: str, case_insensitive: bool) -> bool:
    """One stored value against one request value, with the rules of the SQL predicates."""
    if vr == "PN" and case_insensitive:
        stored, query = fold_name(stored), fold_name(query)
    if vr in WILDCARD_VRS and ("*" in query or "?" in query):
        return wildcard_matches(query, stored)
    if vr in ("DA", "TM", "DT"):
        try:
            low, high = bounds(vr, query)
            normal = normal_form(vr, stored)
        except ValueError:
            return False
        return (low is None or normal >= low) and (high is None or normal <= high)
    if vr == "PN" and "=" not in query:
        return query == stored or query in stored.split("=")
    return query == stored


def item_matches(query: Dataset, stored: Dataset, case_insensitive: bool) -> bool:
    """C.2.2.2.6: every key of the request item matches this stored item (unknown matches)."""
    for element in query:
        found = stored.get(element.tag)
        if element.VR == "SQ":
            if not element.value or len(element.value[0]) == 0 or found is None \
                    or not found.value:
                continue
            if not any(item_matches(element.value[0], item, case_insensitive)
                       for item in found.value):
                return False
            continue
        wanted = element_texts(element.value)
        have = element_texts(found.value) if found is not None else ()
        if wanted and have and not any(value_matches(element.VR, s, q, case_insensitive)
                                       for q in wanted for s in have):
            return False
    return True


def load_items(stored: str) -> list[Dataset]:
    """The items of a sequence stored as DICOM JSON (empty when absent or unreadable)."""
    try:
        return [Dataset.from_json(item) for item in json.loads(stored)] if stored else []
    except (ValueError, TypeError, KeyError):
        return []


def sequence_matches(item: Dataset, stored: str, case_insensitive: bool) -> bool:
    """Whether one stored item matches the request item; an empty sequence is unknown."""
    items = load_items(stored)
    return not items or any(item_matches(item, each, case_insensitive) for each in items)


def _name_parts(name: str) -> list[str]:
    plain = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    plain = re.sub(r"['.\u2019]", "", plain.casefold())  # O'Brien is OBrien, Dr. is Dr
    return [part for part in re.split(r"[\^=,\s\-]+", plain) if part]


def _assign(wanted: list[str], parts: list[str]) -> bool:
    """Whether each wanted part matches a different stored part (bipartite matching)."""
    owner: dict[int, int] = {}

    def place(index: int, seen: set[int]) -> bool:
        for slot, part in enumerate(parts):
            if slot not in seen and wildcard_matches(wanted[index], part):
                seen.add(slot)
                if slot not in owner or place(owner[slot], seen):
                    owner[slot] = index
                    return True
        return False

    return all(place(index, set()) for index in range(len(wanted)))


def fuzzy_name_matches(stored: str, query: str, multi: bool = False) -> bool:
    """Fuzzy semantic PN matching: case, accents, apostrophes and component order ignored;
    each part of the request (wildcards allowed) matches a different part of the name, in
    any component group. "smith^mary" matches "Smíth^Mary^^Dr" and "Mary^Smith"."""
    wanted = [part for part in _name_parts(query) if set(part) != {"*"}]
    values = stored.split("\\") if multi else [stored]
    return not stored or any(_assign(wanted, _name_parts(value)) for value in values)


# --- one function per matching type (PS3.4 C.2.2.2) --------------------------------------
