"""Sweep files: which notebooks, which parameters, and the run each grid point becomes.

```yaml
# experiments/attention_ablation.yaml
name: attention_ablation        # optional; the file stem otherwise
notebook: notebooks/04_attention_ablation.ipynb
base:  {PRESET: tiny}           # passed to every run
grid:  {ATTENTION: [full, axial, block, nearby], SEED: [0, 1, 2]}   # the cartesian product
```

Grid points that need no run of their own are left out with `exclude:`, a list of partial grid
points; a point is skipped when it matches every key of one entry:

```yaml
grid:    {ATTENTION: [full, axial, block, nearby], BUDGET: [steps, time]}
exclude: [{ATTENTION: full, BUDGET: time}]   # full's time budget is its own steps run
```

Several notebooks: `notebooks: [notebooks/06_*.ipynb, notebooks/07_*.ipynb]` (paths or glob
patterns; each entry must match at least one notebook). Paths are relative to the project root: the
nearest folder above the sweep file that holds `notebooks/`, failing that the nearest one at or
above the current directory (so a sweep file kept anywhere runs from inside the checkout).

A file that cannot be read as YAML (bad syntax, bytes that are not UTF-8) is a `SweepFileError`,
whose message is `FILE:LINE: what is wrong`; `python -m nuwa_lab sweep` prints it and exits 2.

Each grid point of each notebook is a `Run`; its folder under `experiments/runs/<sweep>/` is named
by its sorted `KEY=value` pairs (the grid keys and PRESET), prefixed by the notebook stem when the
sweep uses the `notebooks:` list form: `ATTENTION=axial-PRESET=tiny-SEED=0`,
`06_text_to_visual/MODALITY=image-PRESET=tiny`.

| thing | code |
|---|---|
| a sweep file | `load_sweep(path, preset=None) -> Sweep` (validated) |
| its YAML, or `FILE:LINE: message` | `read_sweep_file(path)`, `SweepFileError` |
| one notebook execution | `Run(notebook, params, key)` |
| the grid points | `Sweep.runs()`; `select_runs(runs, ["SEED=0"])` for `--only` |
"""

from __future__ import annotations

import glob
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nuwa_lab.config import PRESETS
from nuwa_lab.lab.experiment.notebook import notebook_parameters

SWEEP_KEYS = ("name", "description", "notebook", "notebooks", "base", "grid", "exclude")
NAME_KEYS_ALWAYS = ("PRESET",)  # part of every run's folder name: runs of two presets never collide
_UNSAFE = re.compile(r"[^A-Za-z0-9._+,=-]")


@dataclass(frozen=True)
class Run:
    """One notebook execution: the notebook, the parameters passed to it, its folder name."""

    notebook: Path
    params: dict[str, Any]
    key: str  # the folder under the sweep's run folder, e.g. "ATTENTION=axial-PRESET=tiny-SEED=0"


@dataclass(frozen=True)
class Sweep:
    """A validated sweep file."""

    name: str
    root: (
        Path  # project root: notebooks run with cwd = their folder, runs go under root/experiments
    )
    notebooks: tuple[Path, ...]
    base: dict[str, Any]
    grid: dict[str, list[Any]]
    path: Path | None = None
    description: str = ""
    # `notebooks: [...]` form: each run folder starts with the notebook stem, however many match
    by_notebook: bool = False
    exclude: tuple[dict[str, Any], ...] = ()  # partial grid points that are not run
    declared: dict[Path, dict[str, Any]] = field(default_factory=dict, repr=False, compare=False)

    def runs(self) -> list[Run]:
        """Every (notebook, grid point) in order: notebooks as listed, grid keys as written."""
        keys = list(self.grid)
        runs, seen = [], {}
        for notebook in self.notebooks:
            for values in itertools.product(*(self.grid[k] for k in keys)):
                point = dict(zip(keys, values, strict=True))
                if any(all(point[k] == v for k, v in e.items()) for e in self.exclude):
                    continue
                params = {**self.base, **point}
                name_keys = sorted(set(keys) | {k for k in NAME_KEYS_ALWAYS if k in params})
                key = run_name(params, name_keys)
                if self.by_notebook or len(self.notebooks) > 1:
                    key = f"{notebook.stem}/{key}"
                if key in seen and seen[key] != params:
                    raise ValueError(
                        f"sweep {self.name!r}: runs {seen[key]} and {params} would share "
                        f"the folder "
                        f"{key!r} (their values differ only in characters unsafe in file names); "
                        "rename one of the values"
                    )
                seen[key] = params
                runs.append(Run(notebook=notebook, params=params, key=key))
        return runs


def format_value(value: Any) -> str:
    """A parameter value as it appears in a folder name (before unsafe characters are replaced)."""
    if isinstance(value, (list, tuple)):
        return ",".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, separators=(",", "="))
    return str(value)


def run_name(params: dict[str, Any], keys: list[str]) -> str:
    """`KEY=value-KEY=value` for `keys` (in the given order), safe as a folder name."""
    if not keys:
        return "default"
    return "-".join(_UNSAFE.sub("_", f"{k}={format_value(params[k])}") for k in keys)


def find_root(start: str | Path) -> Path:
    """The checkout: the nearest folder at or above `start` that holds a `notebooks/` folder,
    failing that the nearest one at or above the current directory."""
    start = Path(start).resolve()
    origins = dict.fromkeys([start if start.is_dir() else start.parent, Path.cwd().resolve()])
    for origin in origins:
        for folder in [origin, *origin.parents]:
            if (folder / "notebooks").is_dir():
                return folder
    looked = " and ".join(f"{origin} and every folder above it" for origin in origins)
    raise FileNotFoundError(
        f"no nuwa_lab checkout found: looked for a notebooks/ folder in {looked}; "
        "run from inside the checkout (the folder holding notebooks/) or pass root="
    )


def _resolve_notebooks(entries: list[str], root: Path, source: str) -> tuple[Path, ...]:
    found: list[Path] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise ValueError(f"{source}: notebook entries must be paths, got {entry!r}")
        pattern = entry if Path(entry).is_absolute() else str(root / entry)
        matches = sorted(Path(p) for p in glob.glob(pattern)) if glob.has_magic(entry) else []
        if not glob.has_magic(entry) and Path(pattern).is_file():
            matches = [Path(pattern)]
        if not matches:
            existing = sorted(p.name for p in (root / "notebooks").glob("*.ipynb"))
            missing = "matches no notebook" if glob.has_magic(entry) else "does not exist (yet)"
            raise FileNotFoundError(
                f"{source}: notebook {entry!r} {missing} under {root}; "
                f"existing notebooks: {', '.join(existing) or 'none'}"
            )
        found += [m.resolve() for m in matches if m.resolve() not in found]
    return tuple(found)


def _mapping(value: Any, what: str, source: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{source}: `{what}` must be a mapping of NAME: value, got {value!r}")
    return dict(value)


def load_sweep(
    path: str | Path, *, preset: str | None = None, root: str | Path | None = None
) -> Sweep:
    """Read and validate a sweep file; `preset` overrides PRESET. Raises before anything runs."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sweep file {path} does not exist")
    data = read_sweep_file(path) or {}
    return sweep_from_dict(data, source=str(path), path=path, preset=preset, root=root)


class SweepFileError(ValueError):
    """A sweep file that is not valid UTF-8 YAML; `str(e)` is `FILE:LINE: message`."""

    def __init__(self, path: str | Path, line: int | None, message: str):
        self.path, self.line, self.message = Path(path), line, message
        super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")


def read_sweep_file(path: str | Path) -> Any:
    """The YAML in `path`, or a `SweepFileError` naming the file and the line that is wrong."""
    import yaml

    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        column = e.start - raw.rfind(b"\n", 0, e.start)
        raise SweepFileError(
            path,
            line,
            f"byte 0x{raw[e.start]:02x} at offset {e.start} (column {column}) is not UTF-8; "
            "save the file as UTF-8",
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark, start = e.problem_mark or e.context_mark, e.context_mark
        context = f"{e.context} from line {start.line + 1}" if e.context and start else e.context
        what = "; ".join(str(x) for x in (context, e.problem) if x)
        where = f" (column {mark.column + 1})" if mark else ""
        raise SweepFileError(
            path, mark.line + 1 if mark else None, f"bad YAML: {what}{where}"
        ) from None
    except yaml.YAMLError as e:  # e.g. a control character (yaml.reader.ReaderError)
        position = getattr(e, "position", None)
        line = text.count("\n", 0, position) + 1 if isinstance(position, int) else None
        reason = str(e).splitlines()[0]
        raise SweepFileError(path, line, f"bad YAML: {reason}") from None


def sweep_from_dict(
    data: dict[str, Any],
    *,
    source: str = "sweep",
    path: Path | None = None,
    preset: str | None = None,
    root: str | Path | None = None,
) -> Sweep:
    """Validate a sweep given as a dict (what `load_sweep` reads from YAML)."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a sweep file is a mapping with keys {', '.join(SWEEP_KEYS)}")
    unknown = sorted(set(data) - set(SWEEP_KEYS))
    if unknown:
        raise ValueError(f"{source}: unknown key(s) {unknown}; valid keys: {', '.join(SWEEP_KEYS)}")
    if ("notebook" in data) == ("notebooks" in data):
        raise ValueError(f"{source}: give exactly one of `notebook: PATH` or `notebooks: [PATHS]`")
    entries = data.get("notebooks", [data.get("notebook")])
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: `notebooks` must be a non-empty list of paths or globs")
    root = Path(root).resolve() if root else find_root(path if path else Path.cwd())
    notebooks = _resolve_notebooks(entries, root, source)

    name = str(data.get("name") or (path.stem if path else "sweep"))
    if _UNSAFE.search(name) or name.startswith("."):
        raise ValueError(f"{source}: sweep name {name!r} must use only letters, digits and ._+-")
    base = _mapping(data.get("base"), "base", source)
    grid = _mapping(data.get("grid"), "grid", source)
    if preset is not None:
        base["PRESET"] = preset
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ValueError(
                f"{source}: grid key {key!r} must list one or more values, got {values!r}; "
                "put a single fixed value under `base:` instead"
            )
    both = sorted(set(base) & set(grid))
    if both:
        raise ValueError(f"{source}: {both} appear in both base and grid; keep each key in one")
    exclude = _exclusions(data.get("exclude", []), grid, source)

    declared = {nb: notebook_parameters(nb) for nb in notebooks}
    problems = []
    for nb, params in declared.items():
        valid = ", ".join(params)
        for key in [*base, *grid]:
            if key == "RUN_DIR":
                problems.append(f"RUN_DIR is set by the runner; remove it from {source}")
            elif key not in params:
                hint = _close_match(key, list(params))
                problems.append(
                    f"{nb.name} declares no parameter {key!r}{hint}; valid parameters: {valid}"
                )
            else:
                values = [base[key]] if key in base else grid[key]
                problems += [m for v in values if (m := params[key].check(v))]
    if "PRESET" in base:
        if base["PRESET"] not in PRESETS:
            problems.append(f"PRESET {base['PRESET']!r} is unknown; valid presets: {PRESETS}")
    if problems:
        raise ValueError(f"{source}: invalid sweep:\n  " + "\n  ".join(dict.fromkeys(problems)))
    return Sweep(
        name=name,
        root=root,
        notebooks=notebooks,
        base=base,
        grid=grid,
        path=path.resolve() if path else None,
        description=str(data.get("description", "")),
        declared=declared,
        by_notebook="notebooks" in data,
        exclude=exclude,
    )


def _exclusions(
    entries: Any, grid: dict[str, list[Any]], source: str
) -> tuple[dict[str, Any], ...]:
    """`exclude:` checked: a list of mappings whose keys are grid keys and values grid values."""
    if not isinstance(entries, list):
        raise ValueError(
            f"{source}: `exclude` must be a list of partial grid points, e.g. "
            "[{ATTENTION: full, BUDGET: time}]"
        )
    out = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry:
            raise ValueError(
                f"{source}: each `exclude` entry must be a non-empty mapping, got {entry!r}"
            )
        for key, value in entry.items():
            if key not in grid:
                raise ValueError(
                    f"{source}: `exclude` names {key!r}, which is not a grid key; grid keys: "
                    f"{', '.join(grid)}"
                )
            if value not in grid[key]:
                raise ValueError(
                    f"{source}: `exclude` value {key}={value!r} is not in the grid's {grid[key]}"
                )
        out.append(dict(entry))
    return tuple(out)


def _close_match(key: str, valid: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_only(items: list[str] | None) -> dict[str, Any]:
    """`["SEED=0", "ATTENTION=axial"]` -> {"SEED": 0, "ATTENTION": "axial"} (values are YAML)."""
    import yaml

    selected = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--only expects KEY=value, got {item!r}")
        selected[key] = value if key == "notebook" else yaml.safe_load(value)
    return selected


def select_runs(runs: list[Run], only: list[str] | None) -> list[Run]:
    """The runs whose parameters match every `KEY=value` (`notebook=NN` matches the file stem)."""
    wanted = parse_only(only)
    known = {k for r in runs for k in r.params} | {"notebook"}
    unknown = sorted(set(wanted) - known)
    if unknown:
        raise ValueError(f"--only: unknown key(s) {unknown}; keys of this sweep: {sorted(known)}")

    def match(run: Run) -> bool:
        for key, value in wanted.items():
            if key == "notebook":
                if not run.notebook.stem.startswith(str(value)):
                    return False
            elif run.params.get(key) != value and str(run.params.get(key)) != str(value):
                return False
        return True

    return [r for r in runs if match(r)]
