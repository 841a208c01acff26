"""Files out: every write is atomic (a temporary file renamed into place), so a reader or a resumed run never
sees half a file; JSON records; safetensors with a format tag.

The done marker of a job is its JSON record, written last: see `finished`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save

from .errors import CnnscopeError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success rename it over `path`, on failure delete it.

    Parameters
    ----------
    path : str or PathLike
        The file to write. Its folder is created if missing.

    Yields
    ------
    Path
        Where to write; it becomes `path` when the block exits without an exception.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + target.name + ".", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        # mkstemp makes 0600 (and some writers replace the file): finished files get normal permissions
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def slug(text: str) -> str:
    """`text` made safe as a file name (runs of other characters become one underscore)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write a UTF-8 text file atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


CSV_DIGITS = 4  # significant digits: error rates and correlations over at most thousands of images


def csv_value(value, digits: int = CSV_DIGITS) -> str:
    """A table cell: floats to `digits` significant digits (float32 noise such as 0.10999999940395355 is
    not a measurement), None empty, anything else as text."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def write_csv(header, rows, path: str | os.PathLike, digits: int = CSV_DIGITS) -> Path:
    """A CSV table (a header row, then rows of values, or dicts keyed by the header) written atomically."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        values = [row.get(k) for k in header] if isinstance(row, dict) else row
        writer.writerow([csv_value(v, digits) for v in values])
    return write_text(buffer.getvalue(), path)


def write_json(data, path: str | os.PathLike) -> Path:
    """Write `data` as indented, strict JSON atomically (keys in insertion order, so files are byte-stable).
    NaN or infinity is refused: a file other tools cannot parse is never written."""
    try:
        text = json.dumps(data, indent=2, sort_keys=False, allow_nan=False)
    except ValueError:
        raise CnnscopeError(f"{path}: a result is not a finite number (NaN or infinity); nothing written") from None
    return write_text(text + "\n", path)


def json_safe(data):
    """`data` as JSON would give it back (tuples become lists): what a settings comparison must use."""
    return json.loads(json.dumps(data))


def finished(folder: str | os.PathLike, key: str, settings: dict) -> dict | None:
    """The record {"settings", "results", "files"} a job wrote as folder/key.json, if it was made with these
    settings, was not interrupted and every file it lists (relative to folder) is there; else None (redo it)."""
    meta = Path(folder) / f"{key}.json"
    try:
        data = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("settings") != json_safe(settings):
        return None
    if isinstance(data.get("results"), dict) and data["results"].get("interrupted"):
        return None
    if not all((Path(folder) / name).is_file() for name in data.get("files", [])):
        return None
    return data


def changed_settings(folder: str | os.PathLike, key: str, settings: dict) -> list[str]:
    """What differs between the settings a job's existing record was made with and `settings` (top-level names;
    a recipe's or model's name as old -> new): empty when there is no record or they are the same."""
    try:
        old = json.loads((Path(folder) / f"{key}.json").read_text()).get("settings")
    except (OSError, ValueError, AttributeError):
        return []
    new = json_safe(settings)
    if not isinstance(old, dict) or old == new:
        return []
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before == after:
            continue
        if isinstance(before, dict) and isinstance(after, dict) and before.get("name") != after.get("name"):
            changes.append(f"{name} {before.get('name')} -> {after.get('name')}")
        else:
            changes.append(name)
    return changes


def save_tensors(tensors: dict, path: str | os.PathLike, fmt: str, **metadata: str) -> Path:
    """Save tensors as safetensors atomically, tagged with a format name and string metadata (JSON for
    anything structured). The same tensors and metadata give the same bytes in every process."""
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, metadata={"format": fmt, **metadata})
    with atomic_path(path) as tmp:
        tmp.write_bytes(_canonical(data))
    return Path(path)


def _canonical(data: bytes) -> bytes:
    """safetensors bytes with the header's keys sorted: the library writes its metadata map in a hash order
    that changes from process to process, so equal files would otherwise differ. (Layout: 8-byte
    little-endian header length, the JSON header padded with spaces to a multiple of 8, the data.)"""
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + n])
    header["__metadata__"] = dict(sorted(header.get("__metadata__", {}).items()))
    text = json.dumps({k: header[k] for k in sorted(header)}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + data[8 + n:]


def load_tensors(path: str | os.PathLike, fmt: str, what: str) -> tuple[dict, dict]:
    """(tensors, metadata) of a safetensors file written by `save_tensors` with format `fmt`; one-line errors."""
    p = Path(path)
    if not p.is_file():
        raise CnnscopeError(f"{what} {path}: no such file")
    try:
        with safe_open(str(p), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises several types for bad headers
        raise CnnscopeError(f"{what} {path}: not a readable safetensors file ({err})") from None
    if meta.get("format") != fmt:
        raise CnnscopeError(f"{what} {path}: not a cnnscope {what} (format tag missing or different)")
    return tensors, meta
