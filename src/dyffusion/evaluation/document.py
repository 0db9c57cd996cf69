"""The blocks of a report (headings, facts, tables, figures, code, links) and the report made of them: each
renders itself as Markdown and as self-contained HTML (figures as data URIs, inline CSS, no network resource)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from dyffusion.io import write_text


@dataclass
class Heading:
    text: str
    level: int = 2

    def markdown(self, out: Path) -> str:
        return f"{'#' * self.level} {self.text}"

    def html(self) -> str:
        return f"<h{self.level}>{html.escape(self.text)}</h{self.level}>"


@dataclass
class Facts:
    items: dict[str, str]

    def markdown(self, out: Path) -> str:
        return "\n".join(f"- **{key}**: {value}" for key, value in self.items.items())

    def html(self) -> str:
        rows = "".join(f"<dt>{html.escape(key)}</dt><dd>{html.escape(str(value))}</dd>"
                       for key, value in self.items.items())
        return f"<dl>{rows}</dl>"


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]
    best: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of the cells to mark

    def markdown(self, out: Path) -> str:
        def cell(r: int, c: int, text: str) -> str:
            text = text.replace("|", "\\|")
            return f"**{text}**" if (r, c) in self.best else text

        lines = ["| " + " | ".join(cell(-1, c, h) for c, h in enumerate(self.header)) + " |",
                 "|" + "---|" * len(self.header)]
        lines += ["| " + " | ".join(cell(r, c, text) for c, text in enumerate(row)) + " |"
                  for r, row in enumerate(self.rows)]
        return "\n".join(lines)

    def html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join(
            "<tr>" + "".join(f'<td class="best"><strong>{html.escape(text)}</strong></td>' if (r, c) in self.best
                             else f"<td>{html.escape(text)}</td>" for c, text in enumerate(row)) + "</tr>"
            for r, row in enumerate(self.rows))
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


@dataclass
class Figure:
    title: str
    path: Path

    def markdown(self, out: Path) -> str:
        link = self.path.relative_to(out) if self.path.is_relative_to(out) else self.path
        return f"![{self.title}]({link})"

    def html(self) -> str:
        data = base64.b64encode(self.path.read_bytes()).decode("ascii")
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(self.title)}">'
                f"<figcaption>{html.escape(self.title)}</figcaption></figure>")


@dataclass
class Code:
    text: str
    summary: str  # what the code is: a collapsed section in HTML

    def markdown(self, out: Path) -> str:
        return f"{self.summary}:\n\n```\n{self.text.rstrip()}\n```"

    def html(self) -> str:
        return (f"<details><summary>{html.escape(self.summary)}</summary>"
                f"<pre>{html.escape(self.text.rstrip())}</pre></details>")


@dataclass
class ReportLink:
    """A link to another report, ``directory`` relative to this one's: its Markdown from Markdown, HTML from HTML."""

    text: str
    directory: Path

    def markdown(self, out: Path) -> str:
        return f"[{self.text}]({(self.directory / 'report.md').as_posix()})"

    def html(self) -> str:
        target = html.escape((self.directory / "report.html").as_posix())
        return f'<p><a href="{target}">{html.escape(self.text)}</a></p>'


CSS = """
body { font: 15px/1.5 system-ui, sans-serif; color: #1f2328; margin: 0; background: #fff; }
main { max-width: 1280px; margin: 0 auto; padding: 1.5rem 2rem 3rem; }
h1 { font-size: 1.6rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.25rem; margin-top: 2rem; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; }
dt { font-weight: 600; } dd { margin: 0; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; margin: .5rem 0; }
th, td { border: 1px solid #d0d7de; padding: .25rem .6rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f6f8fa; } td.best { background: #dafbe1; }
figure { margin: 1rem 0 2rem; } img { max-width: 100%; height: auto; border: 1px solid #eaeef2; }
figcaption { color: #59636e; font-size: .9rem; }
pre { background: #f6f8fa; padding: .8rem; overflow: auto; font-size: 13px; }
.note { color: #59636e; font-size: .9rem; }
"""

Block = Heading | Facts | Table | Figure | Code | ReportLink


@dataclass
class Report:
    title: str
    blocks: list[Block]

    def markdown(self, out: Path) -> str:
        """Figures and links relative to ``out``, where the report is written."""
        return "\n\n".join([f"# {self.title}", *(block.markdown(out) for block in self.blocks)]) + "\n"

    def html(self) -> str:
        body = "\n".join(block.html() for block in self.blocks)
        return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{html.escape(self.title)}</title><style>{CSS}</style></head>\n"
                f"<body><main><h1>{html.escape(self.title)}</h1>\n{body}\n</main></body></html>\n")

    def write(self, out: Path) -> dict[str, Path]:
        """``out/report.md`` and ``out/report.html``; returns format -> path."""
        paths = {"markdown": out / "report.md", "html": out / "report.html"}
        write_text(paths["markdown"], self.markdown(out))
        write_text(paths["html"], self.html())
        return paths
