"""A small report document rendered twice: GitHub markdown and one self-contained HTML page.

The report is built from blocks (headings, paragraphs, tables, figures), each rendered to both
formats at once, so neither format needs a markdown library. In HTML the figures are embedded as
base64 PNGs, so the page can be mailed or opened anywhere; in markdown they are links relative to
the report. With `figure_dir`, every figure is first copied there as a small PNG (at most
`FIGURE_MAX_PX` wide), so a report committed with its folder renders on a repository's web page
without the git-ignored run folders.

    doc = Document(base=Path("experiments"))
    doc.heading("Run times"); doc.table(rows, ["notebook", "wall_time_s"]); doc.figures([png])
    doc.write(Path("experiments/report.md"), Path("experiments/report.html"), title="nuwa_lab")
"""

from __future__ import annotations

import base64
import html
import os
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from nuwa_lab.lab.experiment.collect import format_cell, to_markdown
from nuwa_lab.train.files import atomic_write_text

FIGURE_MAX_PX = 900  # width of a figure copied next to the report
_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.6rem 0 1.2rem; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.55rem; text-align: left; }
th { background: #f2f2f2; }
blockquote { border-left: 4px solid #c33; margin: 1rem 0; padding: 0.3rem 1rem;
             background: #fff6f6; }
figure { display: inline-block; margin: 0.3rem 0.6rem 0.6rem 0; vertical-align: top; }
figure img { max-width: 32rem; max-height: 24rem; }
figcaption { font-size: 0.8rem; color: #555; }
code { background: #f4f4f4; padding: 0 0.2rem; }
"""


def figure_name(path: Path) -> str:
    """The name of `path`'s copy among the report's figures: prefixed by its run folder, so figures
    of different runs never collide (a run's inline figures: <run>/figures/<n>.png)."""
    if path.parent.name == "figures":
        return f"{path.parent.parent.name}-{path.stem}.png"
    return f"{path.parent.name}-{path.stem}.png".lstrip(".")


def _inline_html(text: str) -> str:
    """Escape, then render `code` and **bold** (the only inline markup the report uses)."""
    text = html.escape(text)
    text = _CODE.sub(r"<code>\1</code>", text)
    return _BOLD.sub(r"<strong>\1</strong>", text)


class Document:
    """Blocks appended in order; `markdown()` and `html()` render them."""

    def __init__(
        self, *, base: Path, max_figure_bytes: int = 3_000_000, figure_dir: Path | None = None
    ) -> None:
        self.base = Path(base)
        self.max_figure_bytes = max_figure_bytes
        self.figure_dir = Path(figure_dir) if figure_dir is not None else None
        self.figure_names: set[str] = set()  # the files of figure_dir this document shows
        self._md: list[str] = []
        self._html: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self._md.append("#" * level + " " + text)
        self._html.append(f"<h{level}>{_inline_html(text)}</h{level}>")

    def paragraph(self, text: str) -> None:
        self._md.append(text)
        self._html.append(f"<p>{_inline_html(text)}</p>")

    def note(self, text: str) -> None:
        """A highlighted remark (a blockquote): the "not comparable to the paper" label."""
        self._md.append("> " + text)
        self._html.append(f"<blockquote>{_inline_html(text)}</blockquote>")

    def bullets(self, items: Iterable[str]) -> None:
        items = list(items)
        self._md.append("\n".join(f"- {item}" for item in items))
        self._html.append("<ul>" + "".join(f"<li>{_inline_html(i)}</li>" for i in items) + "</ul>")

    def table(
        self, rows: list[dict[str, Any]], columns: list[str] | None = None, floatfmt: str = ".4g"
    ) -> None:
        if columns is None:
            columns = list(dict.fromkeys(k for row in rows for k in row))
        self._md.append(to_markdown(rows, columns, floatfmt=floatfmt))
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
        body = "".join(
            "<tr>"
            + "".join(f"<td>{html.escape(format_cell(r.get(c), floatfmt))}</td>" for c in columns)
            + "</tr>"
            for r in rows
        )
        self._html.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def figures(self, paths: Iterable[Path], captions: Iterable[str] | None = None) -> None:
        paths = [Path(p) for p in paths]
        captions = list(captions) if captions is not None else [p.name for p in paths]
        md, parts = [], []
        for path, caption in zip(paths, captions, strict=True):
            if self.figure_dir is not None:
                path = self._small_copy(path)
            rel = Path(os.path.relpath(path, self.base)).as_posix()
            md.append(f"![{caption}]({rel})")
            data = path.read_bytes()
            if len(data) > self.max_figure_bytes:
                src = html.escape(rel)  # too big to embed: link it like the markdown does
            else:
                src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
            parts.append(
                f'<figure><img src="{src}" alt="{html.escape(caption)}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        if paths:
            self._md.append("\n".join(md))
            self._html.append("<div>" + "".join(parts) + "</div>")

    def _small_copy(self, path: Path) -> Path:
        """`path` copied into `figure_dir` as a PNG at most FIGURE_MAX_PX wide (named after its
        run folder, so figures of different runs never collide); an animated PNG is copied as
        it is, so the report's videos play."""
        self.figure_dir.mkdir(parents=True, exist_ok=True)
        if path.parent.resolve() == self.figure_dir.resolve():  # already one of the report's
            self.figure_names.add(path.name)
            return path
        target = self.figure_dir / figure_name(path)
        self.figure_names.add(target.name)
        tmp = target.with_name(f".{target.name}.tmp")
        with Image.open(path) as image:
            if getattr(image, "is_animated", False):  # an APNG video: kept whole, so it plays
                shutil.copyfile(path, tmp)
                os.replace(tmp, target)
                return target
            if image.width > FIGURE_MAX_PX:
                height = round(image.height * FIGURE_MAX_PX / image.width)
                image = image.resize((FIGURE_MAX_PX, height), Image.LANCZOS)
            image.save(tmp, format="PNG", optimize=True)
        os.replace(tmp, target)
        return target

    def markdown(self) -> str:
        return "\n\n".join(self._md) + "\n"

    def html(self, title: str) -> str:
        return (
            "<!DOCTYPE html>\n<html><head><meta charset='utf-8'>"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n"
            + "\n".join(self._html)
            + "\n</body></html>\n"
        )

    def write(self, markdown_path: Path, html_path: Path, *, title: str) -> None:
        atomic_write_text(markdown_path, self.markdown())
        atomic_write_text(html_path, self.html(title))
