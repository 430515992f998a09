"""The record of what defines a generator run, kept in its output folder.

``RUN_FILE`` (``OUT/.fluorojax-run``, JSON) holds the seed, the whole scene spec, the CT set
(each case's name, its files' names and sizes in bytes) and the fluorojax version. A run
refuses an output folder that is neither empty nor a fluorojax dataset (no run record), and one
whose record differs from its own, naming every difference: so ``--resume`` can never mix two
datasets (images of two seeds, two image sizes or two CT sets in one folder). The file is
hidden and not ``.json``, so FluoroSeg readers that list ``ROOT/*.json`` never see it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import fluorojax
from fluorojax._files import StrPath, check_writable, write_atomic
from fluorojax.scene.cases import CaseSource
from fluorojax.scene.spec import SceneSpec

RUN_FILE = ".fluorojax-run"


def _file_entry(case: str, key: str, path: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"case {case!r}: its {key} file {path!r} does not exist")
    return {"file_name": os.path.basename(path), "bytes": os.path.getsize(path)}


def run_record(sources: Sequence[CaseSource], spec: SceneSpec, seed: int) -> dict:
    """The JSON-able record of a run: generator version, seed, spec and CT set."""
    cases = []
    for source in sorted(sources, key=lambda s: s.name):
        entry: dict[str, object] = {"name": source.name}
        if source.ct is None:
            entry["example"] = True
        else:
            for key in ("ct", "labels", "structures"):
                entry[key] = _file_entry(source.name, key, getattr(source, key))
        cases.append(entry)
    return {"fluorojax_version": fluorojax.__version__, "seed": seed, "spec": spec.to_dict(), "cases": cases}


def differences(stored: object, current: object, where: str = "") -> list[str]:
    """Human-readable differences between two JSON values, by key path."""
    if isinstance(stored, dict) and isinstance(current, dict):
        out = []
        for key in sorted(set(stored) | set(current)):
            path = f"{where}.{key}" if where else str(key)
            if key not in stored or key not in current:
                out.append(
                    f"{path}: {'missing' if key not in stored else json.dumps(stored[key])} in the folder, "
                    f"{'missing' if key not in current else json.dumps(current[key])} now"
                )
            else:
                out += differences(stored[key], current[key], path)
        return out
    if where == "cases" and isinstance(stored, list) and isinstance(current, list) and stored != current:
        return [
            f"CT set: the folder has cases {[c.get('name') for c in stored]}, this run {[c.get('name') for c in current]}"
            + ("" if [c.get("name") for c in stored] != [c.get("name") for c in current] else " (their files differ)")
        ]
    if stored != current:
        return [f"{where}: {json.dumps(stored)} in the folder, {json.dumps(current)} now"]
    return []


def claim_output(out_dir: StrPath, record: dict) -> Path:
    """Check that ``out_dir`` may take this run and write its run record; returns the folder.

    ``out_dir`` must be missing, empty, or hold a run record equal to ``record``. The folder is
    created only once every check passed. ValueError / NotADirectoryError / PermissionError
    naming the folder otherwise.
    """
    out = Path(os.fspath(out_dir))
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"output folder {str(out)!r} is a file, expected a folder")
    run_file = out / RUN_FILE
    if out.is_dir() and any(out.iterdir()):
        if not run_file.is_file():
            raise ValueError(
                f"output folder {str(out)!r} is not empty and holds no fluorojax dataset (no {RUN_FILE} run "
                f"record): refusing to write into it; choose a new or empty folder"
            )
        try:
            stored = json.loads(run_file.read_text("utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{run_file}: unreadable run record ({err})") from None
        diff = differences(stored, record)
        if diff:
            raise ValueError(
                f"output folder {str(out)!r} holds another run; refusing to mix datasets: " + "; ".join(diff)
            )
        return out
    existing = out.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"output folder {str(out)!r} cannot be created: {str(existing)!r} is a file")
    check_writable(existing / RUN_FILE, f"output folder {str(out)!r}:")
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(run_file, (json.dumps(record, indent=1, sort_keys=True) + "\n").encode("utf-8"))
    return out
