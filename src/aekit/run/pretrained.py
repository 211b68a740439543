"""Trained runs that ship with aekit: ``aekit.pretrained("chapter")``, ``pretrained:chapter`` on the command line.

:func:`aekit.run.runs.pretrained` loads one as a :class:`~aekit.run.runs.Run`. Each is a normal run directory under ``zoo/NAME/`` (config, weights, history, metrics; a codec's tables; a fitted
prior), listed in ``zoo/manifest.json`` with every file's SHA-256, the commands that trained it, its seed, the CPU
and thread count it was trained on, and its headline metrics. ``benchmarks/pretrained.py --update`` trains them with
those commands and writes the manifest; without ``--update`` it retrains each and checks what it reproduces.

They are read-only: every file is checked against the manifest before a run is used (a changed file is refused in
one line naming it), and :class:`~aekit.run.rundir.RunDir` refuses to write into one (``aekit pretrained NAME --out
DIR`` copies it into a run of one's own). This module imports no torch, so the CLI's parser can resolve the names.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from functools import lru_cache
from pathlib import Path

from ..errors import CheckpointError, ConfigError

ZOO = Path(__file__).parent / "zoo"
MANIFEST = ZOO / "manifest.json"
PREFIX = "pretrained:"


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The manifest: ``{"format": ..., "runs": {NAME: {"help", "commands", "seed", "files": {file: sha256}, ...}}}``."""
    try:
        return json.loads(MANIFEST.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{MANIFEST}: the pretrained runs' manifest cannot be read ({err})") from None


def names() -> list[str]:
    return sorted(manifest()["runs"])


def entry(name: str) -> dict:
    runs = manifest()["runs"]
    if name not in runs:
        raise ConfigError(f"{PREFIX}{name}: no such pretrained run (there are {', '.join(sorted(runs))})")
    return runs[name]


def locate(name: str) -> Path:
    """The folder of pretrained run ``name``, once each of its files matches the manifest's SHA-256 (and no file the
    manifest does not list is there to be read)."""
    folder = ZOO / name
    expected = entry(name)["files"]
    for file, digest in expected.items():
        path = folder / file
        if not path.is_file():
            raise CheckpointError(f"{path}: missing from the pretrained run {name!r}; reinstall aekit")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise CheckpointError(f"{path}: changed since aekit shipped it (its SHA-256 is not the manifest's); "
                                  "reinstall aekit")  # fmt: skip
    extra = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
                   and str(p.relative_to(folder)) not in expected)  # fmt: skip
    if extra:
        raise CheckpointError(f"{folder / extra[0]}: not part of the pretrained run {name!r} as aekit shipped it; "
                              "reinstall aekit")  # fmt: skip
    return folder


def resolve(run: str | Path) -> Path:
    """A run argument as a folder: ``pretrained:NAME`` is the shipped run ``NAME`` (checked), anything else a path."""
    text = str(run)
    return locate(text[len(PREFIX):]) if text.startswith(PREFIX) else Path(run)


def shipped_name(path: str | Path) -> str | None:
    """The name of the pretrained run at ``path``, or None for a run of one's own."""
    path = Path(path)
    try:
        return path.name if path.resolve().parent == ZOO.resolve() and path.name in manifest()["runs"] else None
    except CheckpointError:
        return None


def refuse_if_shipped(path: str | Path, what: str) -> None:
    """A CheckpointError, saying how to copy it, when ``path`` is a run that ships with aekit (``what``: why that
    matters, "cannot be written into")."""
    name = shipped_name(path)
    if name is not None:
        raise CheckpointError(f"{PREFIX}{name} is read-only (it ships with aekit) and {what}; copy it into a run of "
                              f"your own first: aekit pretrained {name} --out runs/{name}")  # fmt: skip


def copy(name: str, out: str | Path) -> Path:
    """Copy pretrained run ``name`` (checked) into ``out``, a new folder: a run of one's own to write into."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CheckpointError(f"{out}: already exists; pick a new folder")
    shutil.copytree(locate(name), out, dirs_exist_ok=True)
    return out
