"""The model store's files: the commit pointer and durable, atomic writes.

Layout under the store's root (see :mod:`edge_agent._models`)::

    <name>/current.json           {"version": n, "previous": m | null}  (the commit point)
    <name>/<version>/model.onnx
    <name>/<version>/manifest.json

Everything written is fsynced, and so is the directory that gains or renames an entry:
a rename is durable only then. Leftovers of an interrupted write carry a temporary prefix
and are removed at the next start.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from protocol import ModelManifest

from ._errors import ModelRejected

__all__ = [
    "POINTER",
    "TMP_PREFIX",
    "Pointer",
    "clean_tmp",
    "commit",
    "fsync_dir",
    "is_name",
    "read_pointer",
    "remove",
    "write_pointer",
    "write_synced",
]

log = logging.getLogger("edge_agent.models")

#: the file whose replacement commits an install or a rollback
POINTER: Final = "current.json"
#: prefix of everything written before it is renamed into place
TMP_PREFIX: Final = ".tmp-"
# Model names as protocol.ModelManifest accepts them; anything else in root is not ours.
_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,63}")


@dataclass(frozen=True, slots=True)
class Pointer:
    """What ``current.json`` says: the serving version and the one to roll back to."""

    version: int
    previous: int | None


def is_name(name: str) -> bool:
    """Whether ``name`` can be a model name (so a directory of that name may be ours)."""
    return _NAME.fullmatch(name) is not None


def read_pointer(name_dir: Path) -> Pointer | None:
    """The committed pointer of a name, None if there is none; ModelRejected if corrupt."""
    path = name_dir / POINTER
    try:
        raw = json.loads(path.read_bytes())
        version, previous = raw["version"], raw["previous"]
        if not isinstance(version, int) or not (previous is None or isinstance(previous, int)):
            raise TypeError("version and previous must be integers")
        return Pointer(version, previous)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ModelRejected(
            f"{path} is unreadable: {exc}", reason="corrupt_pointer", ref=name_dir.name
        ) from exc


def commit(root: Path, manifest: ModelManifest, data: bytes, previous: int | None) -> None:
    """Write ``manifest``'s version directory, then flip the pointer: durable and atomic.

    Versions other than the new one and ``previous`` are removed afterwards. Raises
    :class:`ModelRejected` (reason ``io``) if the disk refuses.
    """
    name_dir = root / manifest.name
    tmp = name_dir / f"{TMP_PREFIX}{manifest.version}-{uuid.uuid4().hex[:8]}"
    final = name_dir / str(manifest.version)
    try:
        if not name_dir.exists():
            name_dir.mkdir()
            fsync_dir(root)
        tmp.mkdir()
        write_synced(tmp / "model.onnx", data)
        write_synced(tmp / "manifest.json", (manifest.to_json() + "\n").encode())
        fsync_dir(tmp)
        # A directory of this version can only be a leftover nothing points at (or a
        # current version that failed to load and is being replaced): never what
        # serves, never the previous one (both are older).
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        fsync_dir(name_dir)
        write_pointer(name_dir, Pointer(manifest.version, previous))
    except OSError as exc:
        remove(tmp)
        raise ModelRejected(
            f"model {manifest.ref} refused: cannot write {manifest.ref}: {exc}",
            reason="io",
            ref=manifest.ref,
        ) from exc
    keep = {str(manifest.version), str(previous), POINTER}
    for entry in name_dir.iterdir():
        if entry.name not in keep:
            remove(entry)


def write_pointer(name_dir: Path, pointer: Pointer) -> None:
    """Replace ``current.json`` atomically and durably (ModelRejected ``io`` if it fails)."""
    body = json.dumps({"version": pointer.version, "previous": pointer.previous})
    tmp = name_dir / f"{TMP_PREFIX}{POINTER}-{uuid.uuid4().hex[:8]}"
    try:
        write_synced(tmp, body.encode())
        os.replace(tmp, name_dir / POINTER)
        fsync_dir(name_dir)
    except OSError as exc:
        remove(tmp)
        raise ModelRejected(
            f"cannot write {name_dir / POINTER}: {exc}",
            reason="io",
            ref=f"{name_dir.name}@{pointer.version}",
        ) from exc


def write_synced(path: Path, data: bytes) -> None:
    """Create ``path`` (it must not exist) with ``data``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory durable."""
    # A rename or a new entry is durable only once the directory itself is synced.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_tmp(name_dir: Path) -> None:
    """Remove what interrupted writes left in a name's directory."""
    for entry in name_dir.iterdir():
        if entry.name.startswith(TMP_PREFIX):
            remove(entry)


def remove(path: Path) -> None:
    """Best-effort removal of garbage: a leftover costs disk, never correctness."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)
