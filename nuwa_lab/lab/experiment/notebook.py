"""What a notebook declares: its `parameters` cell, read with `ast` (never executed), and its title.

papermill injects parameters by appending a cell after the one tagged `parameters`; it only warns
when a name is not declared there. The sweep runner reads the declarations here first, so a typo in
a sweep file is an error before anything runs.

| thing | code |
|---|---|
| the cell tagged `parameters` | `parameters_cell(nb)` |
| `NAME: type = literal  # help` | `NotebookParameter(name, type, default, help)` |
| every declared name | `notebook_parameters(path) -> dict[str, NotebookParameter]` |
| "# NN · Topic" | `notebook_title(path)` |
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_NO_DEFAULT = object()
_TYPES: dict[str, tuple[type, ...]] = {"int": (int,), "float": (int, float), "str": (str,)}


@dataclass(frozen=True)
class NotebookParameter:
    """One `NAME: type = literal  # help` line of a parameters cell."""

    name: str
    type: str | None  # the annotation as written ("int", "str", ...), None when not annotated
    default: Any  # the literal value; `literal` is False when it is an expression
    help: str
    literal: bool = True

    def check(self, value: Any) -> str | None:
        """A message when `value` does not fit the annotation (simple types only), else None."""
        if self.type == "bool":
            ok = isinstance(value, bool)
        elif self.type in _TYPES:
            ok = isinstance(value, _TYPES[self.type]) and not isinstance(value, bool)
        else:
            return None
        if ok:
            return None
        return f"{self.name} is declared `{self.type}` but got {value!r} ({type(value).__name__})"


def read_notebook(path: str | Path) -> dict[str, Any]:
    """The notebook as plain JSON (nbformat is not needed to read the cells)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"notebook {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not a valid notebook (JSON error: {e})") from e


def cell_source(cell: dict[str, Any]) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def cell_tags(cell: dict[str, Any]) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def parameters_cell(nb: dict[str, Any], path: str | Path = "notebook") -> dict[str, Any]:
    """The first code cell tagged `parameters` (papermill's convention)."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell_tags(cell):
            return cell
    raise ValueError(
        f"{path} has no code cell tagged 'parameters'; tag the first code cell `parameters` "
        "(JupyterLab: property inspector -> cell tags) so papermill can inject values"
    )


def parse_parameters(source: str, path: str | Path = "notebook") -> dict[str, NotebookParameter]:
    """Every top-level `NAME = ...` / `NAME: T = ...` of a parameters cell, in order."""
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise ValueError(f"the parameters cell of {path} is not valid Python: {e}") from e
    lines = source.splitlines()
    found: dict[str, NotebookParameter] = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets, annotation, value = [node.target], ast.unparse(node.annotation), node.value
        elif isinstance(node, ast.Assign):
            targets = [t for t in node.targets if isinstance(t, ast.Name)]
            annotation, value = None, node.value
        else:
            continue
        default, literal = _NO_DEFAULT, False
        if value is not None:
            try:
                default, literal = ast.literal_eval(value), True
            except ValueError:
                default = ast.unparse(value)
        line = lines[node.end_lineno - 1] if node.end_lineno else ""
        help_text = line.split("#", 1)[1].strip() if "#" in line else ""
        for target in targets:
            found[target.id] = NotebookParameter(
                name=target.id,
                type=annotation,
                default=None if default is _NO_DEFAULT else default,
                help=help_text,
                literal=literal,
            )
    return found


def notebook_parameters(path: str | Path) -> dict[str, NotebookParameter]:
    """The parameters a notebook declares in its cell tagged `parameters`."""
    nb = read_notebook(path)
    return parse_parameters(cell_source(parameters_cell(nb, path)), path)


def notebook_title(path: str | Path) -> str:
    """The first markdown heading ("02 · The VQ-GAN tokenizer"), else the file stem."""
    for cell in read_notebook(path).get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        for line in cell_source(cell).splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return Path(path).stem
