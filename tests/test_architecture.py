"""The house of ../shared/DESIGN.md, checked: imports point down, faces stay apart, and each
third-party stack stays in its room. Imports are read with `ast`, including those inside
functions, so a late import cannot hide an upward arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "pacs"

# Which rooms of ours each room may import (its own always). Lower rooms first.
ALLOWED: dict[str, set[str]] = {
    "model": set(),
    "archive": {"model"},
    "index": {"model"},
    "config": set(),
    "services": {"model", "archive", "index", "config"},
    "dimse": {"services", "model", "config"},
    "web": {"services", "model", "config"},
    "cli": {"services", "model", "index", "config"},  # index: `pacs db` administers the schema
    "root": {"cli"},  # pacs/__init__.py and pacs/__main__.py
    "bench": {"model", "archive", "index", "config", "services"},  # a tool; nothing imports it
}
# The modules that may import the protocol faces: `pacs serve` starts them (the one
# composition root); `pacs conformance` reads the DIMSE face's tables to describe it.
FACE_IMPORTERS = {"pacs.cli.serve": {"dimse", "web"}, "pacs.cli.conformance": {"dimse"}}
# Third-party stacks and the only room that may import each (bench is a tool, exempt).
THIRD_PARTY = {
    "peewee": "index",
    "playhouse": "index",
    "psycopg2": "index",
    "pynetdicom": "dimse",
    "starlette": "web",
    "uvicorn": "web",
    "fastapi": "web",
    "aiohttp": "web",
    "multipart": "web",
    "python_multipart": "web",
}


def room_of(module: str) -> str:
    """The room of a dotted module name under `pacs` ('root' for the package itself)."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__", "__init__"):
        return "root"
    return parts[1]


def module_name(root: Path, path: Path) -> str:
    """`pacs.services.find` for root/services/find.py (root is the package folder)."""
    relative = path.relative_to(root).with_suffix("")
    parts = [root.name, *relative.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every import in a file, function bodies included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            # `from pacs import operations` names a module too
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module == "pacs" and not alias.name.startswith("__")]
    return found


def violations(root: Path) -> list[str]:
    """Every import under the package `root` that breaks the house rules, one line each."""
    package = root.name
    problems: list[str] = []
    for path in sorted(root.rglob("*.py")):
        importer = module_name(root, path)
        importer_room = room_of(importer)
        where = f"{path.relative_to(root.parent)}"
        for line, name in imported_modules(path):
            top = name.split(".")[0]
            if top == package:
                if name == package:
                    continue
                target = room_of(name)
                if target == importer_room:
                    continue
                if target == "bench":
                    problems.append(f"{where}:{line}: imports {name}: nothing imports bench")
                elif target in FACE_IMPORTERS.get(importer, set()):
                    continue
                elif target not in ALLOWED.get(importer_room, set()):
                    problems.append(f"{where}:{line}: {importer_room}/ imports {name} "
                                    f"({target}/): not a room below it")
            elif top in THIRD_PARTY and importer_room not in (THIRD_PARTY[top], "bench"):
                problems.append(f"{where}:{line}: {top} imported outside "
                                f"{THIRD_PARTY[top]}/")
    return problems


def test_imports_point_down_the_house() -> None:
    assert violations(PACKAGE) == []


def test_every_module_names_its_room_in_its_docstring() -> None:
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if room_of(module_name(PACKAGE, path)) in ("root", "bench"):
            continue
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if "Room:" not in doc:
            missing.append(str(path.relative_to(PACKAGE)))
    assert missing == []


def _plant(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pacs"
    for name, text in {"__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(("files", "expected"), [
    ({"model/levels.py": "from pacs.services.find import start_search\n"},
     "model/ imports pacs.services.find"),
    ({"index/query.py": "def f():\n    from pacs.archive.files import Archive\n"},
     "index/ imports pacs.archive.files"),
    ({"dimse/find.py": "from pacs.web.qido import search\n"}, "dimse/ imports pacs.web.qido"),
    ({"web/app.py": "import pacs.dimse.server\n"}, "web/ imports pacs.dimse.server"),
    ({"cli/main.py": "from pacs.dimse.server import start_server\n"},
     "cli/ imports pacs.dimse.server"),
    ({"services/find.py": "import peewee\n"}, "peewee imported outside index/"),
    ({"services/retrieve.py": "from pynetdicom import AE\n"},
     "pynetdicom imported outside dimse/"),
    ({"services/store.py": "from starlette.requests import Request\n"},
     "starlette imported outside web/"),
    ({"dimse/server.py": "from pacs.bench import peers\n"}, "nothing imports bench"),
    ({"services/access.py": "from pacs import cli\n"}, "services/ imports pacs.cli"),
    ({"cli/conformance.py": "import pacs.web.app\n"}, "cli/ imports pacs.web.app"),
])
def test_a_planted_violation_is_caught(tmp_path: Path, files: dict[str, str],
                                       expected: str) -> None:
    found = violations(_plant(tmp_path, files))
    assert len(found) == 1 and expected in found[0], found


def test_allowed_arrows_are_not_reported(tmp_path: Path) -> None:
    root = _plant(tmp_path, {
        "cli/serve.py": "from pacs.dimse.server import start_server\nimport pacs.web.app\n",
        "cli/conformance.py": "from pacs.dimse.contexts import SUPPORTED_CONTEXTS\n",
        "dimse/find.py": "from pacs.services.find import start_search\nimport pynetdicom\n",
        "index/query.py": "import peewee\nfrom pacs.model.predicates import Col\n",
        "bench/peers.py": "import pynetdicom\nfrom pacs.index.database import Index\n",
    })
    assert violations(root) == []
