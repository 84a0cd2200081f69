"""`pacs conformance`: the statement's structure (PS3.2 Annex A), that it follows the
configuration, that every status the code defines is explained, and its HTML form.
What the AE accepts against what the statement lists: tests/integration/test_conformance_ae.py.
"""

from __future__ import annotations

import inspect
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from enum import IntEnum
from pathlib import Path

import pytest

from pacs.cli.conformance import statement
from pacs.cli.main import main
from pacs.cli.markdown import to_html
from pacs.cli.sop_conformance import CONDITIONS
from pacs.config import Peer, RemoteAE, Settings
from pacs.model import status

# PS3.2 Annex A: the sections of a conformance statement, in order.
ANNEX_A_SECTIONS = [
    "1 Overview", "2 Table of Contents", "3 Introduction", "4 Networking",
    "4.1 Implementation Model", "4.2 AE Specifications", "4.2.1.1 SOP Classes",
    "4.2.1.2 Association Policies", "4.2.1.3 Association Initiation Policy",
    "4.2.1.4 Association Acceptance Policy", "4.3 Network Interfaces", "4.4 Configuration",
    "5 Media Interchange", "6 Support of Character Sets", "7 Security", "8 Annexes",
]


def _headings(text: str) -> list[str]:
    return [line.lstrip("#").strip() for line in text.splitlines() if line.startswith("#")]


# PS3.2 A: the statement follows the structure of the Annex A template.
def test_statement_has_the_annex_a_sections_in_order() -> None:
    headings = _headings(statement(Settings()))
    positions = [next(i for i, h in enumerate(headings) if h.startswith(section))
                 for section in ANNEX_A_SECTIONS]
    assert positions == sorted(positions)


# PS3.2 A.4.2.1.4: every status a service can return is listed with when it is returned;
# a status added to model/status.py without an explanation fails here.
def test_every_status_of_every_service_is_explained() -> None:
    enums = [member for _, member in inspect.getmembers(status, inspect.isclass)
             if issubclass(member, IntEnum) and member is not IntEnum]
    assert enums
    for enum in enums:
        assert set(CONDITIONS.get(enum, {})) == set(enum), enum.__name__


# PS3.2 A.4.4.1: the AE title, port and remote AEs are the configured ones.
def test_statement_shows_the_configured_titles_and_remote_aes() -> None:
    settings = replace(Settings(), ae_title="ARCHIVE1", port=4242,
                       remotes=(RemoteAE("VIEWER", "192.0.2.7", 11113),))
    text = statement(settings)
    assert text.startswith("# ARCHIVE1 DICOM Conformance Statement")
    assert "| ARCHIVE1 | 0.0.0.0 | port 4242 | none |" in text
    assert "| VIEWER | 192.0.2.7 | 11113 | no |" in text


# PS3.2 A.7.2: association level security is the configured allow-list.
def test_statement_shows_the_allow_list() -> None:
    settings = replace(Settings(), unknown_callers="reject",
                       peers=(Peer("CT1", "10.0.0.5", frozenset({"store", "echo"})),))
    text = statement(settings)
    assert "| CT1 | 10.0.0.5 | echo, store |" in text
    assert "a calling AE title not in the allow-list (7.2) is rejected" in text


# PS3.4 B.2.3: the duplicate row says which policy is in force.
def test_statement_shows_the_duplicate_policy() -> None:
    text = statement(replace(Settings(), duplicates="reject"))
    assert "(`storage.duplicates` = `reject`): the peer gets `0x0111`" in text


def test_database_password_is_not_printed() -> None:
    text = statement(replace(Settings(), database="postgresql://pacs:s3cret@db:5432/pacs"))
    assert "s3cret" not in text
    assert "postgresql://pacs:***@db:5432/pacs" in text


def _table_rows(markdown: str) -> int:
    return sum(1 for line in markdown.splitlines()
               if line.startswith("|") and not line.startswith("|---"))


def test_html_is_a_well_formed_document_with_every_table_row() -> None:
    markdown = statement(Settings())
    document = ET.fromstring(to_html(markdown, "statement").split("\n", 1)[1])
    assert len(document.findall(".//tr")) == _table_rows(markdown)
    assert len(document.findall(".//h4")) == markdown.count("\n#### ")


def test_html_escapes_markup_in_text() -> None:
    html = to_html("a <b> & `x<y` | **bold**\n\n| a \\| b | c |\n|---|---|\n| 1 | 2 |", "t")
    assert "a &lt;b&gt; &amp; <code>x&lt;y</code> | <strong>bold</strong>" in html
    assert "<th>a | b</th>" in html


def test_pacs_conformance_prints_markdown_or_html(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert main(["conformance", "--config", str(empty), "--ae-title", "FROMFLAG"]) == 0
    assert capsys.readouterr().out.startswith("# FROMFLAG DICOM Conformance Statement\n")
    assert main(["conformance", "--config", str(empty), "--html"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!DOCTYPE html>")
    assert re.search(r"<h1 id=\"[^\"]+\">MINIPACS DICOM Conformance Statement</h1>", out)


# PS3.4 C.4.1.2.1: whether keys outside the hierarchy are refused follows the setting.
def test_statement_follows_strict_hierarchy() -> None:
    lenient, strict = (statement(replace(Settings(), strict_hierarchy=value))
                       for value in (False, True))
    assert "(`query.strict_hierarchy` = `false`): answered" in lenient
    assert "(`query.strict_hierarchy` = `true`): refused with `0xA900`" in strict
    assert "a key below the level" in strict and "a key below the level" not in lenient
