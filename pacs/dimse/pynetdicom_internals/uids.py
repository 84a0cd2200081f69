"""UID checks remembered: pynetdicom's `set_uid` and `validate_uid`, and pydicom's
`UID.is_valid` that they and pynetdicom's presentation contexts call, answer a UID they have
already checked from a table instead of checking it again.

Room: dimse/, in dimse/pynetdicom_internals. Imports pynetdicom (private names included),
pydicom's UID and the standard library; nothing of ours.

Why: pynetdicom checks every UID it is given, each time, with three regular expressions
(pydicom's value validation in `UID()`, its own UI validator, `UID.is_valid`). An
A-ASSOCIATE-RQ from getscu (about 120 storage SOP classes, each with its transfer syntaxes)
made some 1,500 such checks, a quarter of the server's CPU for a C-GET of 15 instances; every
C-STORE primitive made and every C-STORE response decoded, a few more. The SOP classes and
transfer syntaxes are the same few hundred UIDs over and over.

What is remembered: `UID.is_valid` (a pure function of the UID's text: PS3.5 9.1, at most
64 characters) for each UID; for `set_uid`, only inputs that went through silently, i.e.
whose result is a non-empty, conformant UID equal to the input itself (nothing stripped,
nothing logged). For those the original returns that same UID whatever the other arguments
say, so the table gives back exactly what it would. Anything else (None, empty,
non-conformant, padded, a UID carrying a private transfer syntax encoding) goes to
pynetdicom's own function every time, with its errors and warnings. The tables are bounded:
each starts afresh past `_LIMIT` entries (SOP Instance UIDs pass through too, each seen only
a few times).
"""

from __future__ import annotations

from typing import Any

from pydicom.uid import UID
from pynetdicom import _config
from pynetdicom import ae as _ae_module
from pynetdicom import dimse_primitives as _dimse_primitives_module
from pynetdicom import pdu_items as _pdu_items_module
from pynetdicom import pdu_primitives as _pdu_primitives_module
from pynetdicom import presentation as _presentation_module
from pynetdicom import utils as _utils_module

_LIMIT = 8192
_pynetdicom_set_uid = _utils_module.set_uid
_pynetdicom_validate_uid = _utils_module.validate_uid

# Input (str or bytes, exactly as given) -> the conformant UID pynetdicom made of it.
_CONFORMANT: dict[Any, UID] = {}
# UID text -> UID.is_valid (conformant).
_CHECKED: dict[str, bool] = {}
_pydicom_is_valid = UID.is_valid.fget


def _remember(table: dict[Any, Any], key: Any, value: Any) -> None:
    if len(table) >= _LIMIT:
        table.clear()  # a fresh start costs a few checks again; a lock would cost every call
    table[key] = value


def remembering_set_uid(value: Any, name: str, allow_empty: bool = True,
                        allow_none: bool = True, validate: bool = True) -> UID | None:
    """pynetdicom's `set_uid`, answering inputs it has already found conformant at once."""
    kind = type(value)
    if kind is str or kind is bytes or (kind is UID
                                        and "_PRIVATE_TS_ENCODING" not in value.__dict__):
        known = _CONFORMANT.get(value)
        if known is not None:
            return known
        result = _pynetdicom_set_uid(value, name, allow_empty, allow_none, validate)
        if result and result.is_valid and "_PRIVATE_TS_ENCODING" not in result.__dict__ \
                and (result.encode("ascii") == value if kind is bytes else result == value):
            _remember(_CONFORMANT, value if kind is not UID else str(value), result)
        return result
    return _pynetdicom_set_uid(value, name, allow_empty, allow_none, validate)


def remembered_is_valid(uid: UID) -> bool:
    """pydicom's `UID.is_valid` (conformant to PS3.5 9.1), remembered per UID text."""
    conformant = _CHECKED.get(uid)
    if conformant is None:
        conformant = bool(_pydicom_is_valid(uid))
        _remember(_CHECKED, str(uid), conformant)
    return conformant


def remembering_validate_uid(uid: UID) -> bool:
    """pynetdicom's `validate_uid`: conformance when it is enforced, else 1-64 characters."""
    if _config.ENFORCE_UID_CONFORMANCE:
        return remembered_is_valid(uid)
    return 0 < len(uid) < 65


# The modules that imported pynetdicom.utils' functions by name, and which of them.
_USERS: dict[Any, tuple[str, ...]] = {
    _utils_module: ("set_uid", "validate_uid"),
    _ae_module: ("set_uid",),
    _dimse_primitives_module: ("set_uid",),
    _pdu_items_module: ("set_uid", "validate_uid"),
    _pdu_primitives_module: ("set_uid", "validate_uid"),
    _presentation_module: ("set_uid", "validate_uid"),
}
_REPLACEMENTS = {"set_uid": remembering_set_uid, "validate_uid": remembering_validate_uid}


def install_uid_hooks() -> tuple[str, ...]:
    """Put the remembering checks in place in every module that uses them; what they replace,
    for the record."""
    UID.is_valid = property(remembered_is_valid,  # type: ignore[method-assign,assignment]
                            doc=UID.is_valid.__doc__)
    replaced = ["pydicom UID.is_valid"]
    for module, names in _USERS.items():
        for name in names:
            setattr(module, name, _REPLACEMENTS[name])
            replaced.append(f"{module.__name__.rsplit('.', 1)[-1]}.{name}")
    return tuple(replaced)
