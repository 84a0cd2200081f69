"""The conformance statement against the running AE (PS3.2 Annex A): every presentation
context it lists is accepted with the roles it lists, nothing else is, the C-FIND keys it
lists per level are supported and the extended negotiation answers are the ones it names.
The statement is read as text, as a peer's integrator would read it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom._uid_dict import UID_dictionary
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE, build_context, build_role

from pacs.cli.conformance import (
    ABSTRACT_SYNTAX_HEADER,
    ACCEPTED_CONTEXTS_HEADING,
    TRANSFER_SYNTAX_HEADER,
    statement,
)
from pacs.cli.markdown import table_cells
from pacs.dimse.server import RunningServer, start_server
from pacs.model.levels import MODELS
from pacs.services.context import Services
from tests.factory import make_file, uid
from tests.integration.find_support import find

VERIFICATION = "1.2.840.10008.1.1"
MODEL_LETTER = {"Patient Root": "P", "Study Root": "S"}


@dataclass(frozen=True)
class Listed:
    """One abstract syntax of 4.2.1.4.1: its transfer syntaxes, roles and negotiation."""

    sop_class_uid: str
    transfer_syntaxes: tuple[str, ...]
    roles: str
    extended: str


def _uid(cell: str) -> str:
    return cell.strip("` ")


def _tables(lines: list[str]) -> Iterator[list[list[str]]]:
    """Each pipe table among `lines`, as rows of cells (header first, separator dropped)."""
    table: list[list[str]] = []
    for line in [*lines, ""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                table.append(table_cells(line))
        elif table:
            yield table
            table = []


def _section(text: str, heading: str) -> list[str]:
    """The lines under `heading` up to the next heading."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip("# ") == heading)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("#")),
               len(lines))
    return lines[start + 1:end]


def listed_contexts(text: str) -> list[Listed]:
    """The accepted presentation contexts a statement lists."""
    found: list[Listed] = []
    syntaxes: tuple[str, ...] = ()
    for table in _tables(_section(text, ACCEPTED_CONTEXTS_HEADING)):
        header, rows = tuple(table[0]), table[1:]
        if header == TRANSFER_SYNTAX_HEADER:
            syntaxes = tuple(_uid(row[1]) for row in rows)
        else:
            assert header == ABSTRACT_SYNTAX_HEADER and syntaxes, header
            found += [Listed(_uid(row[1]), syntaxes, row[2], row[3]) for row in rows]
    return found


@pytest.fixture
def sqlite_server(services_factory: Callable[..., Services],
                  sqlite_url: str) -> Iterator[RunningServer]:
    """Presentation contexts do not depend on the index backend: one server on SQLite."""
    running = start_server(services_factory(sqlite_url))
    yield running
    running.stop(grace=2)


def _propose(server: RunningServer, pairs: list[tuple[str, str]],
             roles: bool = False) -> tuple[set[tuple[str, str]], set[tuple[str, str]],
                                           set[tuple[str, str]]]:
    """Propose (SOP class, transfer syntax) pairs, one context each, at most 128 per
    association; (accepted, rejected, accepted with both roles) pairs."""
    accepted: set[tuple[str, str]] = set()
    rejected: set[tuple[str, str]] = set()
    both_roles: set[tuple[str, str]] = set()
    host, port = server.address
    for start in range(0, len(pairs), 127):
        batch = pairs[start:start + 127]
        ae = AE(ae_title="CONFORMANCE")
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
        # One context we know is accepted, so an all-rejected batch still associates.
        contexts = [build_context(VERIFICATION, [ExplicitVRLittleEndian])]
        contexts += [build_context(sop_class, [syntax]) for sop_class, syntax in batch]
        ae.requested_contexts = contexts
        items = [build_role(uid, scu_role=True, scp_role=True)
                 for uid in dict.fromkeys(sop_class for sop_class, _ in batch)] if roles else []
        association = ae.associate(host, port, ae_title="MINIPACS", ext_neg=items or None)
        assert association.is_established
        for context in association.accepted_contexts:
            pair = (str(context.abstract_syntax), str(context.transfer_syntax[0]))
            accepted.add(pair)
            if context.as_scu and context.as_scp:
                both_roles.add(pair)
        for context in association.rejected_contexts:
            rejected.add((str(context.abstract_syntax), str(context.transfer_syntax[0])))
        association.release()
    return accepted, rejected, both_roles


# PS3.2 A.4.2.1.4 (Association Acceptance Policy, Presentation Contexts Accepted): every
# abstract syntax / transfer syntax pair the statement lists is accepted by the AE.
def test_every_listed_presentation_context_is_accepted(sqlite_server: RunningServer) -> None:
    listed = listed_contexts(statement(sqlite_server.services.settings))
    pairs = [(c.sop_class_uid, s) for c in listed for s in c.transfer_syntaxes]
    assert len({c.sop_class_uid for c in listed}) > 170
    accepted, rejected, _ = _propose(sqlite_server, pairs)
    assert rejected == set()
    assert set(pairs) <= accepted


# PS3.7 D.3.3.4: where the statement lists SCP/SCU Role Selection as accepted, a requester
# proposing both roles (as a C-GET SCU does) gets both.
def test_listed_role_selection_is_accepted(sqlite_server: RunningServer) -> None:
    listed = listed_contexts(statement(sqlite_server.services.settings))
    with_roles = [c for c in listed if "Role Selection accepted" in c.extended]
    assert with_roles and all(c.roles == "SCP and SCU" for c in with_roles)
    pairs = [(c.sop_class_uid, c.transfer_syntaxes[0]) for c in with_roles]
    _, _, both_roles = _propose(sqlite_server, pairs, roles=True)
    assert set(pairs) <= both_roles


# PS3.8 9.3.3.2 (Presentation Context Item result): a SOP class the statement does not list
# is refused, whatever the transfer syntax.
def test_sop_classes_not_listed_are_refused(sqlite_server: RunningServer) -> None:
    listed = {c.sop_class_uid for c in listed_contexts(statement(sqlite_server.services.settings))}
    others = [uid for uid, entry in UID_dictionary.items()
              if entry[1] == "SOP Class" and uid not in listed]
    assert len(others) > 50
    accepted, rejected, _ = _propose(sqlite_server,
                                     [(uid, ExplicitVRLittleEndian) for uid in others])
    assert {pair for pair in accepted if pair[0] != VERIFICATION} == set()
    assert {uid for uid, _ in rejected} == set(others)


# PS3.8 9.3.3.2: a listed SOP class proposed only with transfer syntaxes its group does not
# list is refused (transfer syntaxes not supported).
def test_transfer_syntaxes_not_listed_are_refused(sqlite_server: RunningServer) -> None:
    listed = listed_contexts(statement(sqlite_server.services.settings))
    known = [uid for uid, entry in UID_dictionary.items() if entry[1] == "Transfer Syntax"]
    pairs = [(c.sop_class_uid, syntax) for c in listed for syntax in known
             if syntax not in c.transfer_syntaxes]
    assert pairs
    accepted, rejected, _ = _propose(sqlite_server, pairs)
    assert {pair for pair in accepted if pair[0] != VERIFICATION} == set()
    assert rejected == set(pairs)


# PS3.4 C.5.1.1: the C-FIND extended negotiation answer is what the statement names, byte by
# byte: 1 for each sub-field it lists as accepted, 0 for each it lists as declined.
def test_find_extended_negotiation_answers_as_listed(sqlite_server: RunningServer) -> None:
    text = statement(sqlite_server.services.settings)
    answers = re.findall(r"byte (\d) [^:]+: (accepted|declined)", text)
    assert [int(number) for number, _ in answers] == list(range(1, len(answers) + 1))
    expected = bytes(1 if answer == "accepted" else 0 for _, answer in answers)
    offered = b"\x01" * len(answers)
    for letter in ("P", "S"):
        result = find(sqlite_server, _identifier("STUDY", {}), model=letter, ext_neg=offered)
        assert result.accepted_info == expected


def listed_keys(text: str) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """(model name, level) -> [(tag, VR)] of the C-FIND key tables of a statement."""
    keys: dict[tuple[str, str], list[tuple[int, str]]] = {}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        match = re.match(r"^\*\*(.+), (\w+) level\*\*", line)
        if match:
            table = next(_tables(lines[index + 1:]))
            assert table[0][:3] == ["Attribute", "Tag", "VR"]
            keys[(match[1], match[2])] = [
                (int(row[1].strip("()").replace(",", ""), 16), row[2]) for row in table[1:]]
    return keys


def _identifier(level: str, keys: dict[int, str], **above: str) -> Dataset:
    identifier = Dataset()
    identifier.QueryRetrieveLevel = level
    for keyword, value in above.items():
        setattr(identifier, keyword, value)
    for tag, vr in keys.items():
        identifier.add_new(tag, vr, [] if vr == "SQ" else None)
    return identifier


# PS3.4 C.4.1.1.3.1 / C.6: every key the statement lists for a level, asked with Universal
# Matching on one stored instance, is supported (0xFF00, not 0xFF01) and returned.
def test_every_listed_find_key_is_supported_and_returned(server: RunningServer,
                                                         tmp_path: Path) -> None:
    server.services.ingestor.store(make_file(tmp_path / "in", patient_id="CS-1"))
    unique = {"PATIENT": ("PatientID", "CS-1"), "STUDY": ("StudyInstanceUID", uid("CS-1", "S1")),
              "SERIES": ("SeriesInstanceUID", uid("CS-1", "S1", "SE1"))}
    keys = listed_keys(statement(server.services.settings))
    assert set(keys) == {(model.name, level) for model in MODELS for level in model.levels}
    for model in MODELS:
        for level in model.levels:
            listed = keys[(model.name, level)]
            # C.4.1.2.1: without relational queries, the Unique Keys above the level.
            above = dict(unique[upper] for upper in model.levels_above(level))
            result = find(server, _identifier(level, dict(listed), **above),
                          model=MODEL_LETTER[model.name])
            assert result.status == 0x0000, (model.name, level, result.final)
            assert [status for status, _ in result.pending] == [0xFF00], (model.name, level)
            answer = result.identifiers[0]
            assert [tag for tag, _ in listed if tag not in answer] == [], (model.name, level)


# PS3.4 C.4.1.1.3.1: a key the statement does not list for the level is answered 0xFF01
# (returned zero length), so the list is complete as well as true.
def test_a_key_not_listed_is_reported_unsupported(server: RunningServer,
                                                  tmp_path: Path) -> None:
    server.services.ingestor.store(make_file(tmp_path / "in", patient_id="CS-2"))
    keys = listed_keys(statement(server.services.settings))
    manufacturer = (0x00080070, "LO")
    assert manufacturer not in keys[("Study Root", "SERIES")]
    result = find(server, _identifier("SERIES", dict([manufacturer]),
                                      StudyInstanceUID=uid("CS-2", "S1")), model="S")
    assert [status for status, _ in result.pending] == [0xFF01]
