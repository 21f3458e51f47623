"""Every notebooks/NN_*.ipynb follows STYLE.md's notebook rules (checked statically, never run).

Each rule is a function returning the list of problems it finds; the same functions are run on a
deliberately bad notebook so a rule that stopped finding anything would fail here too.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
REQUIRED = {
    "PRESET": "str",
    "SEED": "int",
    "DEVICE": "str",
    "RUN_DIR": "str",
    "INTERACTIVE": "bool",
    "CONFIG": "str",
}


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def parse(source: str) -> ast.Module:
    """A code cell as Python, with IPython magics (`%...`, `!...`) blanked out."""
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines()]
    return ast.parse("\n".join(lines))


def check_valid_nbformat(nb, path: Path) -> list[str]:
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as e:
        return [f"not valid nbformat: {e.message}"]
    return []


def check_no_outputs(nb, path: Path) -> list[str]:
    return [
        f"code cell {i} has stored outputs or an execution count (clear them before saving)"
        for i, c in enumerate(nb.cells)
        if c.cell_type == "code" and (c.get("outputs") or c.get("execution_count") is not None)
    ]


def check_title(nb, path: Path) -> list[str]:
    number = path.name[:2]
    first = nb.cells[0] if nb.cells else None
    if (
        first is None
        or first.cell_type != "markdown"
        or not first.source.startswith(f"# {number} ·")
    ):
        return [f"the first cell must be markdown starting with '# {number} · Topic'"]
    return []


def check_parameters_cell(nb, path: Path) -> list[str]:
    cells = code_cells(nb)
    if not cells or "parameters" not in tags(cells[0]):
        return ["the first code cell must be tagged `parameters`"]
    try:
        tree = parse(cells[0].source)
    except SyntaxError as e:
        return [f"the parameters cell is not valid Python: {e}"]
    problems, declared = [], {}
    for node in tree.body:
        if not isinstance(node, ast.AnnAssign) or not isinstance(node.target, ast.Name):
            problems.append(f"parameters cell: `{ast.unparse(node)}` is not `NAME: type = literal`")
            continue
        name = node.target.id
        declared[name] = ast.unparse(node.annotation)
        if not name.isupper():
            problems.append(f"parameter {name} must be UPPER_CASE")
        try:
            value = ast.literal_eval(node.value) if node.value is not None else None
        except ValueError:
            problems.append(f"parameter {name} must be assigned a literal, not an expression")
            continue
        if name == "RUN_DIR" and value != f"../experiments/runs/manual/{path.stem}":
            problems.append(f'RUN_DIR must default to "../experiments/runs/manual/{path.stem}"')
        if name == "PRESET" and value != "tiny":
            problems.append('PRESET must default to "tiny"')
        if name == "INTERACTIVE" and value is not False:
            problems.append("INTERACTIVE must default to False")
        if name == "CONFIG" and value != "":
            problems.append('CONFIG must default to "" (no overrides)')
    for name, annotation in REQUIRED.items():
        if name not in declared:
            problems.append(f"the parameters cell must declare {name}: {annotation}")
        elif declared[name] != annotation:
            problems.append(f"{name} must be annotated `{annotation}`, not `{declared[name]}`")
    return problems


def check_papermill_reads_every_parameter(nb, path: Path) -> list[str]:
    """papermill parses parameter lines with a regex; a line it cannot read (e.g. "=" in the
    comment) is missing from `papermill --help-notebook` and from sweep validation messages."""
    from papermill.translators import PythonTranslator

    cells = code_cells(nb)
    if not cells or "parameters" not in tags(cells[0]):
        return []  # reported by check_parameters_cell
    try:
        tree = parse(cells[0].source)
    except SyntaxError:
        return []
    declared = [n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)]
    read = {p.name for p in PythonTranslator.inspect(cells[0])}
    return [
        f"papermill cannot parse the line of parameter {name}: keep its comment free of '='"
        for name in declared
        if name not in read
    ]


def check_no_definitions(nb, path: Path) -> list[str]:
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "exercise" in tags(cell):
            continue
        try:
            tree = parse(cell.source)
        except SyntaxError as e:
            problems.append(f"code cell {i} is not valid Python: {e}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                problems.append(
                    f"code cell {i} defines {node.name}: move it into nuwa_lab "
                    "(or tag the cell `exercise`)"
                )
    return problems


def _mentions_smoke(test: ast.AST) -> bool:
    for node in ast.walk(test):
        if isinstance(node, ast.Name) and node.id == "SMOKE":
            return True
        if isinstance(node, ast.Constant) and node.value == "smoke":
            return True
    return False


def check_no_smoke_branches(nb, path: Path) -> list[str]:
    problems = []
    for i, cell in enumerate(code_cells(nb)):
        try:
            tree = parse(cell.source)
        except SyntaxError:
            continue  # reported by check_no_definitions
        for node in ast.walk(tree):
            if isinstance(node, (ast.If, ast.IfExp)) and _mentions_smoke(node.test):
                problems.append(
                    f"code cell {i} branches on the smoke preset; sizes come from the preset"
                )
    return problems


def check_summary_and_exercises(nb, path: Path) -> list[str]:
    markdown = [c.source for c in nb.cells if c.cell_type == "markdown"]
    return [
        f'no markdown cell with a "{heading}" heading'
        for heading in ("## Summary", "## Exercises")
        if not any(re.search(rf"^{heading}\b", s, re.MULTILINE) for s in markdown)
    ]


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None))
        == name
    ]


def check_logs_metrics(nb, path: Path) -> list[str]:
    for cell in code_cells(nb):
        try:
            tree = parse(cell.source)
        except SyntaxError:
            continue
        if _calls(tree, "log_metrics"):
            return []
    return ["no code cell calls log_metrics(RUN_DIR, ...)"]


def check_config_overrides_are_applied(nb, path: Path) -> list[str]:
    """A notebook that builds a config reads CONFIG into it: `parse_overrides(CONFIG)`, imported."""
    builds = reads = imports = False
    for cell in code_cells(nb)[1:]:
        if "exercise" in tags(cell):
            continue
        try:
            tree = parse(cell.source)
        except SyntaxError:
            continue
        builds = builds or bool(_calls(tree, "make_config"))
        reads = reads or any(
            any(isinstance(a, ast.Name) and a.id == "CONFIG" for a in call.args)
            for call in _calls(tree, "parse_overrides")
        )
        imports = imports or any(
            isinstance(node, ast.ImportFrom)
            and any(a.name == "parse_overrides" for a in node.names)
            for node in ast.walk(tree)
        )
    if builds and not reads:
        return ["the notebook calls make_config but never applies parse_overrides(CONFIG)"]
    if reads and not imports:
        return ["the notebook calls parse_overrides but never imports it from nuwa_lab.config"]
    return []


# the project's history (sessions, issues, people) lives in docs/lab-notes.md, not in notebooks
HISTORY = re.compile(r"\b(session \d+|issue #\d+|engineer [A-Z]\b)", re.IGNORECASE)


def check_no_history(nb, path: Path) -> list[str]:
    return [
        f"{cell.cell_type} cell {i} carries history ({match.group(0)!r}); it goes to "
        "docs/lab-notes.md"
        for i, cell in enumerate(nb.cells)
        for match in [HISTORY.search(cell.source)]
        if match
    ]


CHECKS = [
    check_valid_nbformat,
    check_no_outputs,
    check_title,
    check_parameters_cell,
    check_papermill_reads_every_parameter,
    check_no_definitions,
    check_no_smoke_branches,
    check_summary_and_exercises,
    check_logs_metrics,
    check_config_overrides_are_applied,
    check_no_history,
]


@pytest.mark.parametrize("check", CHECKS, ids=[c.__name__[6:] for c in CHECKS])
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_follows_the_style(notebook: Path, check) -> None:
    nb = nbformat.read(notebook, as_version=4)
    problems = check(nb, notebook)
    assert not problems, f"{notebook.name}:\n  " + "\n  ".join(problems)


def bad_notebook() -> nbformat.NotebookNode:
    """A notebook that breaks every rule once."""
    params = nbformat.v4.new_code_cell(
        'PRESET: str = "smoke"  # a = b\nSEED = 0\nlr: float = 2 * 0.1\n'
    )
    helper = nbformat.v4.new_code_cell("def helper(x):\n    return x\n\nSMOKE = True")
    branch = nbformat.v4.new_code_cell(
        "n = 4 if PRESET == 'smoke' else 64\nprint(n)\ncfg = make_config(PRESET)"
    )
    branch.outputs = [nbformat.v4.new_output("stream", text="4\n")]
    branch.execution_count = 3
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# Topic\n\nAs measured in session 3, ..."),
            params,
            helper,
            branch,
        ]
    )
    nb.cells[1].metadata["tags"] = ["not-parameters"]
    return nb


def test_papermill_rule_finds_an_unparsable_parameter_line() -> None:
    nb = bad_notebook()
    nb.cells[1].metadata["tags"] = ["parameters"]
    problems = check_papermill_reads_every_parameter(nb, Path("07_bad.ipynb"))
    assert problems == [
        "papermill cannot parse the line of parameter PRESET: keep its comment free of '='"
    ]


BAD_CHECKS = [
    c for c in CHECKS if c not in (check_valid_nbformat, check_papermill_reads_every_parameter)
]


@pytest.mark.parametrize("check", BAD_CHECKS, ids=[c.__name__[6:] for c in BAD_CHECKS])
def test_every_rule_finds_its_problem_in_a_bad_notebook(check) -> None:
    assert check(bad_notebook(), Path("07_bad.ipynb"))


def test_parameter_rules_name_each_problem() -> None:
    nb = bad_notebook()
    nb.cells[1].metadata["tags"] = ["parameters"]
    problems = "\n".join(check_parameters_cell(nb, Path("07_bad.ipynb")))
    for expected in [
        "`SEED = 0` is not `NAME: type = literal`",
        "lr must be UPPER_CASE",
        "lr must be assigned a literal",
        'PRESET must default to "tiny"',
        "must declare RUN_DIR: str",
        "must declare INTERACTIVE: bool",
        "must declare CONFIG: str",
    ]:
        assert expected in problems


def test_config_rule_finds_a_missing_import() -> None:
    nb = bad_notebook()
    nb.cells[3].source = "cfg = make_config(PRESET, **parse_overrides(CONFIG))"
    assert check_config_overrides_are_applied(nb, Path("07_bad.ipynb")) == [
        "the notebook calls parse_overrides but never imports it from nuwa_lab.config"
    ]
    nb.cells[3].source = "from nuwa_lab.config import parse_overrides\n" + nb.cells[3].source
    assert check_config_overrides_are_applied(nb, Path("07_bad.ipynb")) == []


def test_exercise_cells_may_define_functions() -> None:
    nb = bad_notebook()
    nb.cells[2].metadata["tags"] = ["exercise"]
    assert check_no_definitions(nb, Path("07_bad.ipynb")) == []


def test_an_invalid_notebook_is_reported() -> None:
    nb = bad_notebook()
    nb.cells[0]["cell_type"] = "banana"
    assert check_valid_nbformat(nb, Path("07_bad.ipynb"))
