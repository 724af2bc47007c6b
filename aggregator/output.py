"""Output files: rendered strings/bytes -> files under the output folder, written atomically.

A reader of `public/feed.xml` (a web server, a mail job) sees the old file or the new one,
never half of one: each file is written to a temporary name beside it, synced, then renamed
over the old one with `os.replace`. Names are checked to stay inside the output folder
(FAULTS R7: even if a bad source id slipped past config, it cannot write elsewhere).

Imports only `exceptions`; never a stage, storage, pipeline or cli.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath

from aggregator.exceptions import DeliveryError

# One path segment: no leading dot (so no "..", no hidden files), no separators or spaces.
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# Names Windows reserves in every folder, whatever the extension (a copy of the output folder
# on a Windows share would be unreadable).
_RESERVED = frozenset(
    {"con", "prn", "aux", "nul"} | {f"com{i}" for i in range(10)} | {f"lpt{i}" for i in range(10)}
)
# Served files must be readable by a web server running as another user; mkstemp gives 0600.
FILE_MODE = 0o644


def check_name(name: str) -> PurePosixPath:
    """`name` as a relative path of safe segments ("feed.xml", "2026/digest-W48.html");
    ValueError for anything else (absolute, "..", backslashes, reserved device names)."""
    path = PurePosixPath(name)
    # str(path) != name: "a//b", "./a" and "a/" are spelled differently from what gets written.
    if not name or "\\" in name or path.is_absolute() or str(path) != name:
        raise ValueError(f"output name {name!r} is not a relative file name")
    for part in path.parts:
        if not _SEGMENT.fullmatch(part) or part.split(".")[0].lower() in _RESERVED:
            raise ValueError(f"output name {name!r} has an unsafe part {part!r}")
    return path


def write_outputs(out_dir: Path, files: Mapping[str, bytes | str]) -> list[Path]:
    """Write each `name -> content` under `out_dir` (str as UTF-8), atomically per file.

    Every name is checked before anything is written (ValueError: a bug in the caller).
    Returns the written paths in the order of `files`. An OS error (disk full, permissions)
    is a DeliveryError naming the file; files already written stay.
    """
    names = {name: check_name(name) for name in files}
    root = out_dir.resolve()
    written = []
    for name, content in files.items():
        target = root.joinpath(*names[name].parts)
        data = content.encode("utf-8") if isinstance(content, str) else content
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            # A symlinked subfolder could still lead outside: check where the file really goes.
            if not target.parent.resolve().is_relative_to(root):
                raise ValueError(f"output name {name!r} leads outside {root}")
            _write_atomic(target, data)
        except OSError as e:
            raise DeliveryError(f"cannot write {target}: {e.strerror or e}") from e
        written.append(target)
    return written


def _write_atomic(target: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    # The rename itself is durable only once the folder is synced (POSIX); not on Windows.
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
