"""All-or-nothing writes of zarr stores, one writer at a time.

Local directories: every write produces a complete new *version directory*
``<parent>/.<name>.zarr.versions/v<time_ns>-<uuid>`` and then swaps the symbolic link
``<parent>/<name>.zarr -> .<name>.zarr.versions/<version>`` with ``os.replace`` (an atomic
rename on POSIX). A reader sees the old or the new version, never a mix; a writer killed at any
moment leaves the link on the previous, intact version. ``xr.open_zarr("<name>.zarr")`` follows
the link, so the stores stay plain zarr. The previous version is kept until the next write, so a
lazy reader that resolved the link keeps working; leftovers of killed writers (version
directories newer than the current one, temporary links) are removed under the lock by the next
writer; readers never delete anything.

fsspec URLs (``memory://``, ``s3://``): object stores have no atomic rename, so a write goes to a
staging prefix, is marked complete, and is then moved into place; recovery finishes or rolls back
an interrupted move. Readers may briefly see no store during the move; atomicity there is
best-effort (use a local directory where concurrent readers matter).

One writer per store: an ``fcntl.flock`` on ``<parent>/.<name>.zarr.lock`` (released by the
kernel if the writer dies), waited on for ``SPLINEFLOW_LOCK_TIMEOUT`` seconds (default 60).
For fsspec URLs the lock is per process only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PROCESS_LOCKS: dict[str, threading.Lock] = {}
_PROCESS_LOCKS_GUARD = threading.Lock()
DEFAULT_LOCK_TIMEOUT_S = 60.0


def is_url(root: str) -> bool:
    """True for an fsspec URL with a scheme other than ``file://``."""
    return bool(_SCHEME.match(root)) and not root.startswith("file://")


def local_path(root: str) -> str:
    """A local path with any ``file://`` prefix removed."""
    return root[len("file://") :] if root.startswith("file://") else root


def join(root: str, *parts: str) -> str:
    """Join path parts onto a root directory or URL."""
    if is_url(root):
        return "/".join([root.rstrip("/"), *parts])
    return os.path.join(local_path(root), *parts)


def _new_version_name() -> str:
    return f"v{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- locking


def _lock_timeout(timeout: float | None) -> float:
    if timeout is not None:
        return float(timeout)
    raw = os.environ.get("SPLINEFLOW_LOCK_TIMEOUT", "")
    try:
        return float(raw) if raw else DEFAULT_LOCK_TIMEOUT_S
    except ValueError as e:
        raise ValueError(
            f"SPLINEFLOW_LOCK_TIMEOUT={raw!r} is not a number of seconds; set e.g. 60"
        ) from e


@contextlib.contextmanager
def writer_lock(target: str, timeout: float | None = None) -> Iterator[None]:
    """Hold the exclusive writer lock of the store at ``target``.

    Waits up to ``timeout`` seconds (default ``$SPLINEFLOW_LOCK_TIMEOUT`` or 60), then raises
    ``RuntimeError`` naming the store and the lock file.
    """
    wait = _lock_timeout(timeout)
    if is_url(target):
        with _PROCESS_LOCKS_GUARD:
            lock = _PROCESS_LOCKS.setdefault(target, threading.Lock())
        if not lock.acquire(timeout=wait):
            raise RuntimeError(
                f"another writer in this process holds the store {target}; waited {wait:g} s"
            )
        try:
            yield
        finally:
            lock.release()
        return
    path = Path(local_path(target))
    lock_file = path.parent / f".{path.name}.lock"
    made_parent = not path.parent.exists()
    while True:
        fd = _open_lock(lock_file)
        try:
            deadline = time.monotonic() + wait
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
                        raise RuntimeError(
                            f"another process (pid {holder}) is writing the store {path}; waited "
                            f"{wait:g} s for its lock {lock_file}. Retry when it has finished, or "
                            "raise SPLINEFLOW_LOCK_TIMEOUT"
                        ) from None
                    time.sleep(0.02)
            if not _same_file(fd, lock_file):  # removed by a writer that gave up: lock anew
                fcntl.flock(fd, fcntl.LOCK_UN)
                continue
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            try:
                yield
            finally:
                # An idle lock file is empty, so a failed write leaves every byte as it was;
                # a lock file made for a store that was never written is removed again.
                os.ftruncate(fd, 0)
                if not exists(target):
                    with contextlib.suppress(OSError):
                        os.unlink(lock_file)
                    if made_parent:  # only if still empty; a racing writer re-creates it
                        with contextlib.suppress(OSError):
                            path.parent.rmdir()
                fcntl.flock(fd, fcntl.LOCK_UN)
            return
        finally:
            os.close(fd)


def _open_lock(lock_file: Path) -> int:
    for _ in range(100):
        try:
            lock_file.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ValueError(
                f"cannot write the store next to {lock_file}: {lock_file.parent} or a folder "
                "above it is not a directory; point --storage / $SPLINEFLOW_STORAGE at a "
                "directory"
            ) from None
        try:
            return _open_lock_file(lock_file)
        except FileNotFoundError:  # the folder was removed by a writer that gave up: again
            continue
    raise RuntimeError(f"could not create the lock file {lock_file}")


def _open_lock_file(lock_file: Path) -> int:
    try:
        return os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    except (IsADirectoryError, NotADirectoryError) as e:
        raise ValueError(
            f"lock file {lock_file} is not a regular file ({e.strerror}); remove or rename it "
            "(it holds no data)"
        ) from None


def _same_file(fd: int, path: Path) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# --------------------------------------------------------------------------- reading


def exists(target: str) -> bool:
    """Whether a committed store exists at ``target`` (a dangling link counts)."""
    if is_url(target):
        fs, path = fsspec.core.url_to_fs(target)
        return bool(fs.exists(path))
    path = Path(local_path(target))
    return path.is_symlink() or path.exists()


def resolve(target: str) -> str:
    """The path or URL of the current version of the store at ``target``.

    Raises ``FileNotFoundError`` when there is no store and ``ValueError`` when the pointer
    is dangling.
    """
    if is_url(target):
        fs, path = fsspec.core.url_to_fs(target)
        if not fs.exists(path):
            raise FileNotFoundError(f"no store at {target}")
        return target
    path = Path(local_path(target))
    if path.is_symlink():
        real = Path(os.path.realpath(path))
        if not real.is_dir():
            raise ValueError(
                f"store {path} is corrupt: it points at {os.readlink(path)}, which is missing; "
                "restore that version or delete the store and ingest again"
            )
        return str(real)
    if path.is_dir():
        return str(path)
    if path.exists():
        raise ValueError(f"store {path} is corrupt: not a directory")
    raise FileNotFoundError(f"no store at {path}")


def previous_version(target: str) -> str | None:
    """The version kept before the current one (local stores), or None."""
    if is_url(target):
        return None
    path = Path(local_path(target))
    versions = _versions_dir(path)
    if not path.is_symlink() or not versions.is_dir():
        return None
    current = Path(os.path.realpath(path)).name
    older = sorted(c.name for c in versions.iterdir() if c.name < current and c.is_dir())
    return str(versions / older[-1]) if older else None


def list_stores(parent: str, suffix: str = ".zarr") -> list[str]:
    """Names (without suffix) of committed stores directly under ``parent``."""
    if is_url(parent):
        fs, path = fsspec.core.url_to_fs(parent)
        if not fs.exists(path):
            return []
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    else:
        p = Path(local_path(parent))
        if not p.is_dir():
            return []
        names = [c.name for c in p.iterdir()]
    return sorted(n[: -len(suffix)] for n in names if n.endswith(suffix) and not n.startswith("."))


# --------------------------------------------------------------------------- writing


def commit(target: str, write: Callable[[str], None]) -> None:
    """Write a new version of the store at ``target`` all-or-nothing.

    ``write(location)`` must create a complete zarr store at ``location`` (a new, empty path).
    The caller holds :func:`writer_lock`.
    """
    recover(target)
    if is_url(target):
        _commit_url(target, write)
    else:
        _commit_local(Path(local_path(target)), write)


def _versions_dir(path: Path) -> Path:
    return path.parent / f".{path.name}.versions"


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _commit_local(path: Path, write: Callable[[str], None]) -> None:
    versions = _versions_dir(path)
    versions.mkdir(parents=True, exist_ok=True)
    if path.exists() and not path.is_symlink():
        # A plain directory (copied in by hand): move it into the version folder first.
        legacy = versions / f"v{0:020d}-legacy"
        os.rename(path, legacy)
        _swap_link(path, legacy)
    previous = Path(os.path.realpath(path)) if path.is_symlink() else None
    new = versions / _new_version_name()
    write(str(new))
    if os.environ.get("SPLINEFLOW_FSYNC", "1") != "0":
        _fsync_tree(new)
    _swap_link(path, new)
    for child in versions.iterdir():
        if child not in (new, previous):
            shutil.rmtree(child, ignore_errors=True)


def _swap_link(path: Path, version: Path) -> None:
    tmp = path.parent / f".{path.name}.link-{uuid.uuid4().hex[:8]}"
    os.symlink(os.path.relpath(version, path.parent), tmp)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def recover(target: str) -> None:
    """Remove what a killed writer left behind (the caller holds the lock)."""
    if is_url(target):
        _recover_url(target)
        return
    path = Path(local_path(target))
    if not path.parent.is_dir():
        return
    for stray in path.parent.glob(f".{glob_escape(path.name)}.link-*"):
        stray.unlink(missing_ok=True)
    versions = _versions_dir(path)
    if not versions.is_dir():
        return
    names = sorted(c.name for c in versions.iterdir())
    if path.is_symlink():
        current = Path(os.path.realpath(path))
        if not current.is_dir():
            return  # dangling: leave everything for a human to inspect
        older = [n for n in names if n < current.name]
        keep = {current.name, *older[-1:]}
    elif path.exists():
        keep = set()  # a plain directory: every version directory is a leftover
    else:
        legacy = [n for n in names if n.endswith("-legacy")]
        if legacy:  # killed while moving a plain directory into the version folder
            _swap_link(path, versions / legacy[-1])
            return
        keep = set()  # never committed: all leftovers
    for name in names:
        if name not in keep:
            shutil.rmtree(versions / name, ignore_errors=True)


def glob_escape(name: str) -> str:
    """Escape glob metacharacters in a file name."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _url_parts(target: str) -> tuple[fsspec.AbstractFileSystem, str, str, str]:
    fs, path = fsspec.core.url_to_fs(target)
    parent, name = path.rstrip("/").rsplit("/", 1)
    return fs, path, parent, name


def _commit_url(target: str, write: Callable[[str], None]) -> None:
    fs, path, parent, name = _url_parts(target)
    vid = _new_version_name()
    staging = f"{parent}/.{name}.staging-{vid}"
    write(fs.unstrip_protocol(staging))
    fs.pipe_file(f"{staging}.complete", b"")
    old = f"{parent}/.{name}.old-{vid}"
    if fs.exists(path):
        fs.mv(path, old, recursive=True)
    fs.mv(staging, path, recursive=True)
    fs.rm_file(f"{staging}.complete")
    if fs.exists(old):
        fs.rm(old, recursive=True)


def _recover_url(target: str) -> None:
    fs, path, parent, name = _url_parts(target)
    if not fs.exists(parent):
        return
    children = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(parent, detail=False)]
    staging = sorted(c for c in children if c.startswith(f".{name}.staging-"))
    complete = [c[: -len(".complete")] for c in staging if c.endswith(".complete")]
    olds = sorted(c for c in children if c.startswith(f".{name}.old-"))
    if not fs.exists(path):
        if complete and complete[-1] in staging:
            fs.mv(f"{parent}/{complete[-1]}", path, recursive=True)
        elif olds:
            fs.mv(f"{parent}/{olds[-1]}", path, recursive=True)
    for child in [*staging, *olds]:
        full = f"{parent}/{child}"
        if fs.exists(full):
            fs.rm(full, recursive=True)


# zarr warns that consolidated metadata is not yet in the v3 spec; xarray needs it to open the
# store without a RuntimeWarning, and zarr-python reads it. The filter is process-wide on
# purpose: ``warnings.catch_warnings`` is not thread-safe, and stages write from threads.
warnings.filterwarnings("ignore", message=".*Consolidated metadata.*", category=UserWarning)


def write_zarr(ds, location: str) -> None:  # noqa: ANN001 - xarray.Dataset
    """Write ``ds`` as a new zarr v3 store with consolidated metadata."""
    ds.to_zarr(location, mode="w-", consolidated=True, zarr_format=3, compute=True)
