"""Atomic writes: a killed process leaves the old file (or none), never a half-written one.

Every writer goes through :func:`atomic_path`: a temporary name in the same folder (so the
rename cannot cross file systems), written, flushed to disk (``fsync``), then renamed over the
final name, which readers therefore see whole or not at all.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` to write; renamed to ``path`` if the block succeeds.

    The folder is created if missing; on an error the temporary file is removed.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.txt"
        >>> with atomic_path(p) as tmp:
        ...     _ = tmp.write_text("x")
        >>> p.read_text(), sorted(f.name for f in p.parent.iterdir())
        ('x', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the process id keeps two writers of the same file from sharing a temporary name
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8, ``\\n`` line ends) to ``path`` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "sub" / "a.txt"
        >>> write_text(p, "hello\\n"); p.read_text()
        'hello\\n'
    """
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
        >>> write_bytes(p, b"\\x00\\x01"); p.read_bytes()
        b'\\x00\\x01'
    """
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` ``obj`` to ``path`` atomically (checkpoints, adapter files).

    Example:
        >>> import tempfile, pathlib, torch
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.pt"
        >>> save_torch({"a": 1}, p); torch.load(p)["a"]
        1
    """
    import torch  # here: the text writers must not cost a torch import

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """A folder ``<path>.tmp`` to fill; renamed to ``path`` (replacing it) if the block succeeds.

    A ``<path>.tmp`` left by a killed run is removed first; on an error it stays for inspection.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "decode"
        >>> with atomic_dir(out) as tmp:
        ...     _ = (tmp / "text").write_text("u1 hi\\n")
        >>> sorted(f.name for f in out.parent.iterdir()), (out / "text").read_text()
        (['decode'], 'u1 hi\\n')
    """
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    if path.exists():
        shutil.rmtree(path)
    tmp.rename(path)


def _fsync(path: Path) -> None:
    """Flush ``path``'s data to disk, so the rename never publishes a file the disk has not got."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
