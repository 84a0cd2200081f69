"""pydicom Datasets made quickly: the state `Dataset.__init__` gives a new data set, set at once.

Room: model/. Imports pydicom only.

`Dataset.__init__` sets a dozen attributes, each through `Dataset.__setattr__`, which first
looks the name up as a DICOM keyword and as a repeater keyword: ~10 us per data set, made once
per C-FIND response and several times per request. `dataset_of` makes the same object (the same
attributes, fresh copies of the mutable ones) without that; tests/test_datasets.py checks it
against `Dataset(elements)` for the installed pydicom.
"""

from __future__ import annotations

import copy
from collections.abc import MutableMapping
from typing import Any

from pydicom.dataset import Dataset

_FRESH: dict[str, Any] = dict(Dataset().__dict__)
_MUTABLE = tuple(name for name, value in _FRESH.items() if isinstance(value, (dict, list, set)))


def dataset_of(elements: MutableMapping[Any, Any],
               encoding: tuple[bool | None, bool | None, Any] | None = None) -> Dataset:
    """`Dataset(elements)` (the dict itself, not a copy, as pydicom keeps it), with
    `set_original_encoding(*encoding)` applied when given."""
    dataset = Dataset.__new__(Dataset)
    state = dict(_FRESH)
    for name in _MUTABLE:
        state[name] = copy.copy(_FRESH[name])
    state["_dict"] = elements
    if encoding is not None:
        implicit, little, character_set = encoding
        state["_read_implicit"], state["_read_little"] = implicit, little
        if character_set is not None:
            state["_read_charset"] = character_set
    dataset.__dict__.update(state)
    return dataset
