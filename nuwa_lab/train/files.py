"""Atomic writes, and a content hash for every file the lab writes and later reads back.

Atomic: a file is written to a temporary file in the same folder, flushed to disk (fsync) and
renamed over the target, so a reader never sees a half-written checkpoint, artifact or metrics
file: the old one or the new.

Verified: a file the lab trusts when it reads it back (an artifact's `model.pt` and `meta.json`,
a training checkpoint, a token cache, a run's `run.json` and `metrics.json`) gets a second file
beside it, `<name>.sha256`, with the sha256 of its bytes in the format of `sha256sum`:

    data/artifacts/nuwa-1a2b3c4d/model.pt
    data/artifacts/nuwa-1a2b3c4d/model.pt.sha256    9f86d081884c7d65...  model.pt

(`cd data/artifacts/nuwa-1a2b3c4d && sha256sum -c model.pt.sha256` checks it by hand). Writing
puts both in temporary files first, then renames the file and, right after it, its hash. Reading
(`read_verified`) loads the bytes, compares their sha256 with the hash file and only then hands
the same bytes to `torch.load` / `json.loads`. So a flipped bit, a truncation or an overwrite is
an `IntegrityError` naming the file, never a model with silently different weights. A file without
a hash file (written by nuwa_lab before files carried hashes, or whose hash was deleted) cannot be
verified and is refused the same way. The caller turns the error into its own, which says how to
rebuild that file: `ArtifactError` (retrain the artifact), `CheckpointError` (start the run over),
a warning and a rebuild (the token caches), a re-run (the sweep runner's run records).

| write (`sha256=True`: with its hash) | read back, verified | for |
|---|---|---|
| `atomic_torch_save(path, obj, sha256=True)` | `load_torch_verified(path)` | every .pt file |
| `atomic_write_json(path, obj, sha256=True)` | `read_json_verified(path)` | meta.json, run.json |
| `write_sha256(path)`: hash a finished file | `read_verified(path)`: its bytes | metrics.json |

(The notebook writes `metrics.json`; the sweep runner hashes it when the run has finished.)

`write_sha256(path)` is also how to vouch for a file written before hashes existed, if you know it
is intact (a file you just rebuilt needs nothing: it is written with its hash).

One writer: under torchrun (several processes training one model) only rank 0 writes. On any
other rank every write here does nothing and returns the path (`is_writer`): the ranks hold the
same weights, checkpoints and caches, and two processes renaming over one file would race.
Whatever must happen after rank 0's write waits for it (`nuwa_lab.train.distributed`).

Limits: a crash between the two renames (one system call apart) leaves the new file beside the
old hash; it is then refused like a corrupt file and rebuilt, never loaded unverified. The hash
detects damage, it is not a signature: whoever can edit a file can edit its hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

HASH_SUFFIX = ".sha256"


class IntegrityError(RuntimeError):
    """A file that fails its hash check or has no hash: `path` and the `problem`, in words."""

    def __init__(self, path: str | os.PathLike, problem: str):
        self.path, self.problem = Path(path), problem
        super().__init__(f"{self.path} {problem}")


def hash_path(path: str | os.PathLike) -> Path:
    """The hash file of `path`: `model.pt` -> `model.pt.sha256`."""
    path = Path(path)
    return path.with_name(path.name + HASH_SUFFIX)


def sha256_line(data: bytes, name: str) -> str:
    """A hash file's content, as `sha256sum` writes it: hex digest, two spaces, file name."""
    return f"{hashlib.sha256(data).hexdigest()}  {name}\n"


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, sha256: bool = False) -> Path:
    """Write `data` to `path` atomically; with `sha256=True` also its hash file, right after."""
    path = Path(path)
    files = [(path, data)]
    if sha256:
        files.append((hash_path(path), sha256_line(data, path.name).encode("ascii")))
    _atomic_write_all(files)
    return path


def is_writer() -> bool:
    """Whether this process writes: rank 0 of torch.distributed's group once it is initialised,
    else the process whose RANK (set by torchrun) is 0 or unset (a plain process)."""
    dist = sys.modules.get("torch.distributed")  # only when torch is loaded: no import here
    if dist is not None and dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK") or 0) == 0


def _atomic_write_all(files: list[tuple[Path, bytes]]) -> None:
    """Every file to a synced temporary file first, then the renames back to back, in order
    (on rank 0 only: see "One writer" in the module docstring)."""
    if not is_writer():
        return
    files[0][0].parent.mkdir(parents=True, exist_ok=True)
    temps: list[str] = []
    try:
        for target, data in files:
            temps.append(_synced_temp(target, data))
        for tmp, (target, _) in zip(temps, files, strict=True):
            os.replace(tmp, target)
    except BaseException:
        for tmp in temps:
            Path(tmp).unlink(missing_ok=True)
        raise


def _synced_temp(path: Path, data: bytes) -> str:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private (0600); a plain open would not
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, *, sha256: bool = False) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), sha256=sha256)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, sha256: bool = False) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=True, default=_jsonable)
    return atomic_write_text(path, text + "\n", sha256=sha256)


def atomic_torch_save(path: str | os.PathLike, obj: Any, *, sha256: bool = False) -> Path:
    import torch  # here, not at the top: the sweep runner uses this module without torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue(), sha256=sha256)


def write_sha256(path: str | os.PathLike) -> Path:
    """Write the hash file of `path` as it is now (for a file written by code that wrote none)."""
    path = Path(path)
    if not is_writer():  # rank 0 hashes the file it wrote
        return hash_path(path)
    return atomic_write_text(hash_path(path), sha256_line(path.read_bytes(), path.name))


def recorded_sha256(path: str | os.PathLike) -> str:
    """The hex digest that the hash file of `path` records; IntegrityError if none is readable."""
    path = Path(path)
    sidecar = hash_path(path)
    try:
        text = sidecar.read_text(encoding="ascii")
    except FileNotFoundError:
        raise IntegrityError(
            path,
            f"has no hash file ({sidecar.name}), so it cannot be verified: it was written by "
            "nuwa_lab before files carried hashes, or its hash file was deleted",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise IntegrityError(path, f"has an unreadable hash file {sidecar.name} ({e})") from None
    digest = (text.split() or [""])[0].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise IntegrityError(
            path,
            f"has a damaged hash file {sidecar.name} (expected '<64 hex digits>  {path.name}')",
        )
    return digest


def read_verified(path: str | os.PathLike) -> bytes:
    """The bytes of `path`, after checking them against its hash file (IntegrityError if not)."""
    path = Path(path)
    data = path.read_bytes()  # a missing file is the caller's FileNotFoundError
    expected = recorded_sha256(path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntegrityError(
            path,
            f"does not match its hash: its {len(data):,} bytes have sha256 {actual[:12]}..., "
            f"{hash_path(path).name} records {expected[:12]}... (the file was damaged, "
            "truncated or changed after it was written)",
        )
    return data


def load_torch_verified(
    path: str | os.PathLike, *, map_location: Any = "cpu", weights_only: bool = True
) -> Any:
    """`torch.load` of `path` once its bytes match its hash file."""
    import torch  # here, not at the top: the sweep runner uses this module without torch

    data = read_verified(path)
    return torch.load(io.BytesIO(data), map_location=map_location, weights_only=weights_only)


def read_json_verified(path: str | os.PathLike) -> Any:
    """The JSON value in `path` once its bytes match its hash file."""
    return json.loads(read_verified(path).decode("utf-8"))


def _jsonable(x: Any) -> Any:
    """numpy / torch scalars and small arrays, tuples, paths become plain JSON values."""
    if hasattr(x, "tolist"):
        return x.tolist()
    if isinstance(x, os.PathLike):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")
