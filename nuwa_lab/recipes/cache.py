"""The artifact cache: train a probe / tokenizer / model once, load it everywhere after.

    probe = get_or_train("probe", cfg)        # trains on the first call, loads on every later one

A notebook either loads what an earlier notebook (or `make lab`) trained, or trains it itself. Each
kind is registered by the module that owns it:

    register_artifact("probe", train_probe, ("world", "probe"), build_fn=build_probe, version="1")

- `sections`: the names of the `Config` fields the artifact depends on: whole sections ("world",
  "seed", ...) or single fields ("probe.steps"). The folder is `<root>/<kind>-<hash>/` with hash =
  `config_hash(kind, version, those fields)`, so a change of any of them trains a new artifact
  beside the old one. The data hook: an artifact that depends on the world section (or a field
  of it) also hashes what the config cannot show about its data, `source_fingerprint(cfg.world)`
  (`nuwa_lab.world.source`): nothing for the Shapes World, a pure function of the config; the
  content hash of the folder for `world.source = "folder:PATH"`, so a changed folder retrains.
  The folder's path is not hashed (`keyed_world`): the same bytes elsewhere load the same artifacts.
- `code`: the modules (or packages) whose source decides what training produces. Their code is
  part of `version` (`code_version`: a hash of their syntax trees without comments, docstrings or
  formatting; the sampler, `UNHASHED_MODULES`, is left out), so editing the training
  code retrains instead of loading a stale artifact; a hand-written `version` can still be bumped
  for what the source does not show.
- `train_fn(cfg, *, workdir, progress)` trains and returns the module (or `(module, metrics_dict)`);
  `workdir` (`<folder>/train/`) is where it keeps its training checkpoints, so an interrupted run
  resumes.
- `build_fn(cfg)` builds an untrained module of the right shape; the cache stores its state_dict.
  Without `build_fn` the whole module is pickled (loading then needs the class importable under the
  same name).

Files: `model.pt` (the weights) then `meta.json` (kind, hash, version, config sections, training
time, metrics) are written atomically with `nuwa_lab.train.files`, each followed by its content
hash (`model.pt.sha256`, `meta.json.sha256`); `meta.json` last, so its presence marks a finished
artifact. Loading checks both against their hashes before reading them: a damaged, truncated or
unverifiable file (one without a hash, as older nuwa_lab wrote) raises `ArtifactError` naming the
file and the fix (delete the folder, or pass `retrain=True`), and so does a damaged training
checkpoint met while training through `get_or_train` (as a `CheckpointError`, whose fix then names
`retrain=True`). A file lock serialises two processes asking for the same artifact.

The root is `$NUWA_LAB_ARTIFACTS` when set, else `<repo>/data/artifacts`.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import hashlib
import importlib.util
import json
import os
import pickle
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nuwa_lab.config import Config, as_dict, config_hash
from nuwa_lab.device import resolve_device
from nuwa_lab.train.checkpoint import CheckpointError
from nuwa_lab.train.distributed import one_writer
from nuwa_lab.train.files import (
    IntegrityError,
    atomic_torch_save,
    atomic_write_json,
    hash_path,
    load_torch_verified,
    read_json_verified,
)
from nuwa_lab.train.loop import NonFiniteLossError
from nuwa_lab.world.source import keyed_world, source_fingerprint

MODEL_FILE = "model.pt"
META_FILE = "meta.json"


class ArtifactError(RuntimeError):
    """A cached artifact cannot be used (corrupt, truncated, or from incompatible code)."""


@dataclass(frozen=True)
class ArtifactKind:
    name: str
    train_fn: Callable[..., Any]
    sections: tuple[str, ...]
    build_fn: Callable[[Config], Any] | None = None
    base_version: str = "1"
    code: tuple[str, ...] = ()
    derived: Callable[[Config], dict[str, Any]] | None = None

    @property
    def version(self) -> str:
        """The hand-written version plus the hash of the code the artifact depends on."""
        return f"{self.base_version}+{code_version(*self.code)}" if self.code else self.base_version


# What every trained artifact depends on: the data and the training loop.
WORLD_AND_LOOP = ("nuwa_lab.world", "nuwa_lab.train")


# modules of a hashed package that never decide what training produces (editing the sampler must
# not retrain every model; benchmarks and figures live outside the hashed packages, in lab and viz)
UNHASHED_MODULES = ("nuwa_lab.model.sample",)


def source_files(module: str) -> list[Path]:
    """The .py files of `module` (every one of a package's but `UNHASHED_MODULES`)."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ValueError(f"artifact code module {module!r} does not exist")
    if not spec.submodule_search_locations:
        return [Path(spec.origin)]
    files = []
    for folder in spec.submodule_search_locations:
        for path in Path(folder).rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join((module, *parts[:-1], *([] if parts[-1] == "__init__" else parts[-1:])))
            if name not in UNHASHED_MODULES:
                files.append(path)
    return sorted(files)


def _without_docstrings(tree: Any) -> Any:

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                if isinstance(body[0].value.value, str):
                    node.body = body[1:] or [ast.Pass()]
    return tree


@functools.cache
def code_version(*modules: str) -> str:
    """A short hash of the code of `modules`: their syntax trees, so comments, docstrings and
    formatting do not count, but any change to what the code does does."""

    digest = hashlib.sha256()
    for module in sorted(set(modules)):
        for path in source_files(module):
            tree = _without_docstrings(ast.parse(path.read_text(), filename=str(path)))
            digest.update(path.name.encode() + ast.dump(tree).encode())
    return digest.hexdigest()[:8]


_REGISTRY: dict[str, ArtifactKind] = {}


def register_artifact(
    kind: str,
    train_fn: Callable[..., Any],
    sections: Sequence[str],
    *,
    build_fn: Callable[[Config], Any] | None = None,
    version: str = "1",
    code: Sequence[str] = (),
    derived: Callable[[Config], dict[str, Any]] | None = None,
) -> None:
    """Register how to train (and rebuild) the artifact `kind`; re-registering replaces it.

    `code`: module names whose source is hashed into the version (see the module docstring).
    `derived(cfg)`: settings no single config field holds (e.g. one row of a table), as a dict
    hashed beside the sections."""
    if isinstance(sections, str):
        raise TypeError(
            f"sections must be a sequence of config field names, not the string "
            f"{sections!r}; write ({sections!r},)"
        )
    if isinstance(code, str):
        raise TypeError(f"code must be a sequence of module names, not the string {code!r}")
    _REGISTRY[kind] = ArtifactKind(
        kind, train_fn, tuple(sections), build_fn, str(version), tuple(code), derived
    )


def registered_kinds() -> list[str]:
    """The artifact kinds registered (all of them once `nuwa_lab.recipes` is imported)."""
    return sorted(_REGISTRY)


def _kind(kind: str) -> ArtifactKind:
    if kind not in _REGISTRY:
        raise ValueError(
            f"unknown artifact kind {kind!r}; registered kinds: "
            f"{', '.join(sorted(_REGISTRY)) or '(none)'}"
        )
    return _REGISTRY[kind]


def default_root() -> Path:
    """`$NUWA_LAB_ARTIFACTS`, else `<repo>/data/artifacts` (else `./data/artifacts`)."""
    env = os.environ.get("NUWA_LAB_ARTIFACTS")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]  # nuwa_lab/recipes/cache.py -> the checkout
    if (repo / "pyproject.toml").is_file():
        return repo / "data" / "artifacts"
    return Path.cwd() / "data" / "artifacts"


def _sections(spec: ArtifactKind, cfg: Config) -> dict[str, Any]:
    out = {}
    world = keyed_world(cfg.world)  # a data folder by its content, not its path
    keyed = cfg if world is cfg.world else dataclasses.replace(cfg, world=world)
    for name in spec.sections:
        value = keyed
        for part in name.split("."):
            if not hasattr(value, part):
                raise ValueError(
                    f"artifact {spec.name!r} depends on config field {name!r}, "
                    f"which the config does not have"
                )
            value = getattr(value, part)
        out[name] = value
    if spec.derived is not None:
        out.update(spec.derived(cfg))
    if any(name == "world" or name.startswith("world.") for name in spec.sections):
        out.update(source_fingerprint(cfg.world))  # a data folder's content hash ({} for shapes)
    return out


def artifact_dir(kind: str, cfg: Config, *, root: str | os.PathLike | None = None) -> Path:
    """The folder `<root>/<kind>-<hash>/` of `kind` under `cfg` (it may not exist yet)."""
    spec = _kind(kind)
    digest = config_hash(kind, spec.version, _sections(spec, cfg))
    return Path(root or default_root()) / f"{kind}-{digest}"


def is_trained(kind: str, cfg: Config, *, root: str | os.PathLike | None = None) -> bool:
    """Whether `kind` under `cfg` has a finished artifact (its `meta.json`, written last)."""
    return (artifact_dir(kind, cfg, root=root) / META_FILE).is_file()


def retrain_hint(kind: str, folder: Path) -> str:
    """How to rebuild the artifact `kind` in `folder`: the end of every ArtifactError."""
    return (
        f"delete the folder {folder} or call get_or_train({kind!r}, cfg, retrain=True) "
        "to train it again"
    )


def load_meta(kind: str, cfg: Config, *, root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The `meta.json` of a finished artifact (training time, metrics, config); raises if absent."""
    folder = artifact_dir(kind, cfg, root=root)
    path = folder / META_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"artifact {kind!r} is not trained yet ({path} missing); "
            f"call get_or_train({kind!r}, cfg)"
        )
    try:
        return read_json_verified(path)
    except IntegrityError as e:
        raise ArtifactError(f"{e}; {retrain_hint(kind, folder)}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt ({e}); {retrain_hint(kind, folder)}") from None


@contextlib.contextmanager
def _lock(folder: Path):
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: no lock (two processes may both train; writes stay atomic)
        yield
        return
    with open(folder / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _load(spec: ArtifactKind, cfg: Config, folder: Path, device) -> Any:
    meta = load_meta(spec.name, cfg, root=folder.parent)
    path = folder / MODEL_FILE
    if not path.is_file():
        raise ArtifactError(
            f"{path} is missing although {folder / META_FILE} exists; "
            f"{retrain_hint(spec.name, folder)}"
        )
    try:
        payload = load_torch_verified(path, weights_only=spec.build_fn is not None)
    except IntegrityError as e:
        raise ArtifactError(f"{e}; {retrain_hint(spec.name, folder)}") from None
    except (
        RuntimeError,
        EOFError,
        OSError,
        ValueError,
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        AttributeError,
        ModuleNotFoundError,
    ) as e:
        raise ArtifactError(
            f"cannot read {path}: it is truncated, corrupt or from incompatible "
            f"code ({type(e).__name__}: {str(e)[:200]}); "
            f"{retrain_hint(spec.name, folder)}"
        ) from None
    if not isinstance(payload, dict) or payload.get("hash") != meta.get("hash"):
        raise ArtifactError(
            f"{path} does not belong to {folder / META_FILE} (hash mismatch); "
            f"{retrain_hint(spec.name, folder)}"
        )
    if spec.build_fn is None:
        module = payload["module"]
    else:
        module = spec.build_fn(cfg)
        try:
            module.load_state_dict(payload["state_dict"])
        except RuntimeError as e:
            raise ArtifactError(
                f"the weights in {path} do not fit the current {spec.name!r} code "
                f"({str(e)[:300]}); bump its version or "
                f"{retrain_hint(spec.name, folder)}"
            ) from None
    return module.to(device).eval()


def _train(spec: ArtifactKind, cfg: Config, folder: Path, progress: bool) -> Any:
    """`spec.train_fn` in `<folder>/train`; its errors about that folder's checkpoint say how to
    go on through get_or_train (which takes `retrain=True`, not train()'s `resume=`)."""
    try:
        return spec.train_fn(cfg, workdir=folder / "train", progress=progress)
    except CheckpointError as e:
        if e.path.is_relative_to(folder):  # not a checkpoint of another artifact it loads
            e.fix = f"to start over from step 0, {retrain_hint(spec.name, folder)}"
        raise
    except NonFiniteLossError as e:
        if e.ckpt_path is not None and Path(e.ckpt_path).is_relative_to(folder):
            e.resume_hint = (
                f"get_or_train({spec.name!r}, cfg) with the same config resumes from it (and "
                "will likely stop here again); changing a setting it depends on (e.g. its lr) "
                "makes another artifact, trained from step 0; to start this one over, "
                f"{retrain_hint(spec.name, folder)}"
            )
        raise


def get_or_train(
    kind: str,
    cfg: Config,
    *,
    progress: bool = True,
    root: str | os.PathLike | None = None,
    retrain: bool = False,
    device: Any = None,
) -> Any:
    """The trained module of `kind` for `cfg`: loaded from the cache, or trained and cached first.

    Returned in eval mode on `device` (default: `cfg.device` resolved). `retrain=True` discards the
    cached artifact (and its training checkpoints) and trains from scratch.
    """
    spec = _kind(kind)
    device = resolve_device(device if device is not None else getattr(cfg, "device", "auto"))
    folder = artifact_dir(kind, cfg, root=root)
    with one_writer(_lock(folder), device):  # under torchrun: rank 0 writes, all wait
        if retrain:
            for name in (META_FILE, MODEL_FILE):
                (folder / name).unlink(missing_ok=True)
                hash_path(folder / name).unlink(missing_ok=True)
            shutil.rmtree(folder / "train", ignore_errors=True)
        if (folder / META_FILE).is_file():
            return _load(spec, cfg, folder, device)
        start = time.perf_counter()
        result = _train(spec, cfg, folder, progress)
        module, metrics = result if isinstance(result, tuple) else (result, {})
        seconds = time.perf_counter() - start
        module = module.cpu().eval()
        digest = folder.name.rsplit("-", 1)[-1]
        payload = {"kind": kind, "hash": digest, "version": spec.version}
        if spec.build_fn is None:
            payload["module"] = module
        else:
            payload["state_dict"] = module.state_dict()
        atomic_torch_save(folder / MODEL_FILE, payload, sha256=True)
        atomic_write_json(
            folder / META_FILE,
            {
                "kind": kind,
                "hash": digest,
                "version": spec.version,
                "sections": {
                    name: as_dict(v) if hasattr(v, "__dataclass_fields__") else v
                    for name, v in _sections(spec, cfg).items()
                },
                "train_seconds": round(seconds, 2),
                "metrics": metrics,
                "created": time.strftime("%Y-%m-%d %H:%M:%S"),
            },
            sha256=True,
        )
        return module.to(device).eval()
