"""The report of a run: one self-contained `index.html` (images inlined), `report.md` and `report.json`.

A report is a list of sections; each has a title, an optional note, tables (rows of dicts
with chosen columns) and images (PNG files). Writing it turns the same sections into HTML and
Markdown, so the two never disagree; `report.json` keeps the sections with the figures.
"""

from __future__ import annotations

import base64
import html
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nnslim.io import atomic_write_bytes, atomic_write_json

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; padding-bottom: .2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .9em; }
th, td { border: 1px solid #ccc; padding: .25em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #eee; margin: .5em 0; }
.note { color: #555; }
"""


@dataclass(frozen=True)
class Table:
    """Rows of dicts, shown in the given columns (key, heading) with numbers formatted by ``formats``."""

    rows: list[dict[str, Any]]
    columns: list[tuple[str, str]]
    formats: dict[str, str] = field(default_factory=dict)
    caption: str = ""

    def cells(self) -> list[list[str]]:
        return [[_format(row.get(key), self.formats.get(key)) for key, _ in self.columns] for row in self.rows]


@dataclass(frozen=True)
class Section:
    """One part of the report."""

    title: str
    note: str = ""
    tables: list[Table] = field(default_factory=list)
    images: list[Path] = field(default_factory=list)


def _format(value: Any, spec: str | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if spec and isinstance(value, int | float) and not isinstance(value, bool):
        return format(value, spec)
    return str(value)


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in table.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in table.cells())
    caption = f"<caption>{html.escape(table.caption)}</caption>" if table.caption else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _markdown_table(table: Table) -> str:
    lines = [f"*{table.caption}*", ""] if table.caption else []
    lines.append("| " + " | ".join(title for _, title in table.columns) + " |")
    lines.append("|" + "---|" * len(table.columns))
    lines += ["| " + " | ".join(row) + " |" for row in table.cells()]
    return "\n".join(lines)


def _inline(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}">'


def write_report(title: str, sections: list[Section], figures: dict[str, Any], out: Path) -> Path:
    """Write ``out/index.html``, ``out/report.md`` (images copied beside it) and ``out/report.json``.

    Args:
        title: The report's heading.
        sections: Its parts, in order.
        figures: Every number behind the report, kept in ``report.json``.
        out: Folder to write into (created).

    Returns:
        The path of ``index.html``.
    """
    out.mkdir(parents=True, exist_ok=True)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    markdown = [f"# {title}", ""]
    for section in sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        markdown += [f"## {section.title}", ""]
        if section.note:
            parts.append(f'<p class="note">{html.escape(section.note)}</p>')
            markdown += [section.note, ""]
        for table in section.tables:
            parts.append(_html_table(table))
            markdown += [_markdown_table(table), ""]
        for image in section.images:
            parts.append(_inline(image))
            if image.parent.resolve() != out.resolve():
                shutil.copyfile(image, out / image.name)
            markdown += [f"![{image.stem}]({image.name})", ""]
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
    atomic_write_bytes(out / "index.html", page.encode())
    atomic_write_bytes(out / "report.md", "\n".join(markdown).encode())
    atomic_write_json(
        out / "report.json",
        {
            "title": title,
            "sections": [{**asdict(s), "images": [p.name for p in s.images]} for s in sections],
            "figures": figures,
        },
    )
    return out / "index.html"
