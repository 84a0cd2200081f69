"""Markdown -> HTML for the subset the `pacs` command writes: headings, paragraphs, bullet
lists, pipe tables, `code` and **bold**.

Room: cli/. Standard library only. The output is a whole, well-formed (XML-parsable) HTML
document, so a statement can be opened in a browser or checked by a parser.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator, Sequence

_HEADING = re.compile(r"^(#{1,6}) (.*)$")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_STYLE = (
    "body{font-family:sans-serif;max-width:70em;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;margin:.5em 0 1em}"
    "th,td{border:1px solid #bbb;padding:.2em .5em;text-align:left;vertical-align:top}"
    "th{background:#eee}code{font-size:.95em}"
)


def slug(text: str) -> str:
    """The id of a heading: lower case, runs of other characters as one hyphen."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def inline(text: str) -> str:
    """One line of Markdown text as HTML: escaped, with `code` spans and **bold**."""
    parts = text.split("`")
    out = []
    for index, part in enumerate(parts):
        escaped = html.escape(part, quote=False)
        if index % 2 == 1 and index < len(parts) - 1:
            out.append(f"<code>{escaped}</code>")
        else:
            out.append(_BOLD.sub(r"<strong>\1</strong>", escaped if index % 2 == 0
                                 else "`" + escaped))
    return "".join(out)


def table_cells(line: str) -> list[str]:
    """The cells of a pipe-table row, `\\|` kept as a literal bar."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip().replace("\\|", "|") for cell in re.split(r"(?<!\\)\|", body)]


def _blocks(lines: Sequence[str]) -> Iterator[tuple[str, list[str]]]:
    """(kind, lines) of each block: heading, table, list or paragraph."""
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.strip():
            index += 1
        elif _HEADING.match(line):
            yield "heading", [line]
            index += 1
        else:
            kind = "table" if line.startswith("|") else "list" if line.startswith("- ") \
                else "paragraph"
            block = [line]
            index += 1
            while index < len(lines) and lines[index].strip() and \
                    not _HEADING.match(lines[index]) and \
                    _continues(kind, lines[index]):
                block.append(lines[index])
                index += 1
            yield kind, block


def _continues(kind: str, line: str) -> bool:
    if kind == "table":
        return line.startswith("|")
    if kind == "list":
        return line.startswith("- ") or line.startswith("  ")
    return not line.startswith("|") and not line.startswith("- ")


def _table(block: list[str]) -> list[str]:
    header, rows = table_cells(block[0]), block[2:]
    out = ["<table>", "<tr>" + "".join(f"<th>{inline(c)}</th>" for c in header) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in table_cells(row)) + "</tr>"
            for row in rows]
    return out + ["</table>"]


def _list(block: list[str]) -> list[str]:
    items: list[str] = []
    for line in block:
        if line.startswith("- "):
            items.append(line[2:].strip())
        else:
            items[-1] += " " + line.strip()
    return ["<ul>", *(f"<li>{inline(item)}</li>" for item in items), "</ul>"]


def to_html(markdown: str, title: str) -> str:
    """A whole HTML document from `markdown`, titled `title`."""
    body: list[str] = []
    for kind, block in _blocks(markdown.splitlines()):
        if kind == "heading":
            match = _HEADING.match(block[0])
            assert match is not None
            level, text = len(match[1]), match[2]
            body.append(f'<h{level} id="{slug(text)}">{inline(text)}</h{level}>')
        elif kind == "table":
            body += _table(block)
        elif kind == "list":
            body += _list(block)
        else:
            body.append("<p>" + inline(" ".join(line.strip() for line in block)) + "</p>")
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"/>',
        f"<title>{html.escape(title, quote=False)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        *body,
        "</body></html>",
        "",
    ])


def md_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """A pipe table as Markdown lines, bars inside cells escaped, then a blank line."""
    def row(cells: Sequence[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [row(header), "|" + "---|" * len(header), *(row(r) for r in rows), ""]
