"""Safe, atomic, deterministic file I/O shared by every stage.

* Every file the project writes goes through :func:`atomic_write` (temporary file in the same
  folder, ``fsync``, then ``os.replace``): a reader sees the old file or the complete new one,
  never half of one.
* JSON is written canonically (:func:`dumps_json`): fixed key order as given, fixed float
  formatting, a trailing newline, so identical inputs give byte-identical files.
* Loading never executes code from a file: :func:`load_yaml` uses ``yaml.safe_load``,
  :func:`restricted_pickle_load` admits only plain containers, strings, numbers and numpy
  arrays, and :func:`safe_extract` refuses archive members that would land outside the target.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from oodml.errors import BadInputError, UnsafeFileError

PathLike = str | os.PathLike


# --------------------------------------------------------------------------------------------
# Atomic writes
# --------------------------------------------------------------------------------------------
def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on success rename it over ``path``.

    On any exception the temporary file is removed and ``path`` is left untouched.
    """
    if mode not in ("w", "wb"):
        raise ValueError("atomic_open supports modes 'w' and 'wb'")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        kwargs = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write(path: PathLike, data: bytes | str) -> None:
    """Write ``data`` to ``path`` atomically (bytes as-is, text as UTF-8)."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with atomic_open(path, "wb") as fh:
        fh.write(data)


# --------------------------------------------------------------------------------------------
# Canonical JSON
# --------------------------------------------------------------------------------------------
def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        if not math.isfinite(f):
            return None
        return f
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps_json(obj: Any, indent: int | None = 1) -> str:
    """Serialise ``obj`` canonically: numpy scalars/arrays converted, NaN/inf become ``null``,
    keys kept in insertion order, trailing newline."""
    return json.dumps(_jsonable(obj), indent=indent, ensure_ascii=False, allow_nan=False) + "\n"


def write_json(path: PathLike, obj: Any, indent: int | None = 1) -> None:
    """Write ``obj`` as canonical JSON, atomically."""
    atomic_write(path, dumps_json(obj, indent=indent))


def read_json(path: PathLike, what: str = "JSON file") -> Any:
    """Read a JSON file, turning a missing or malformed file into one clear :class:`BadInputError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{what} {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {what} {path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInputError(
            f"{what} {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "it may be truncated: regenerate it"
        ) from None


# --------------------------------------------------------------------------------------------
# YAML (safe only)
# --------------------------------------------------------------------------------------------
def load_yaml(path: PathLike, what: str = "YAML file") -> Any:
    """Load YAML with ``yaml.safe_load`` (no Python object tags), with clear errors."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BadInputError(f"{what} {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"cannot read {what} {path}: {exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BadInputError(f"{what} {path} is not valid YAML{where}: {problem}") from None


def dump_yaml(obj: Any) -> str:
    """Serialise plain data as YAML deterministically (insertion order, block style)."""
    import yaml

    return yaml.safe_dump(_jsonable(obj), sort_keys=False, default_flow_style=False, allow_unicode=True)


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------
_SAFE_GLOBALS = {
    ("builtins", "list"),
    ("builtins", "dict"),
    ("builtins", "tuple"),
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "str"),
    ("builtins", "int"),
    ("builtins", "float"),
    ("builtins", "bool"),
    ("builtins", "complex"),
    ("builtins", "bytes"),
    ("builtins", "bytearray"),
    ("collections", "OrderedDict"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "float64"),
    ("numpy", "float32"),
    ("numpy", "int64"),
    ("numpy", "int32"),
    ("_codecs", "encode"),
}
_SAFE_NUMPY_DTYPE_MODULES = {"numpy.dtypes"}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, fh: IO[bytes], source: str):
        super().__init__(fh)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401
        if (module, name) in _SAFE_GLOBALS or (module in _SAFE_NUMPY_DTYPE_MODULES and name.endswith("DType")):
            return super().find_class(module, name)
        raise UnsafeFileError(
            f"{self._source} asks to load {module}.{name}; only plain containers, strings, numbers "
            "and numpy arrays are allowed: refusing to unpickle it (obtain the file from a trusted source)"
        )


def restricted_pickle_load(path: PathLike) -> Any:
    """Unpickle ``path`` admitting only plain containers, strings, numbers and numpy arrays."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(f"pickle file {path} does not exist; check the path") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), str(path)).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # truncated or not a pickle
        raise BadInputError(f"{path} is not a readable pickle ({type(exc).__name__}: {exc})") from None


# --------------------------------------------------------------------------------------------
# Hashing
# --------------------------------------------------------------------------------------------
def file_digest(path: PathLike, algorithm: str = "md5", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any, length: int = 16) -> str:
    """A short hex SHA-256 of a JSON-serialisable object (canonical, key-sorted)."""
    text = json.dumps(_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


# --------------------------------------------------------------------------------------------
# Safe archive extraction
# --------------------------------------------------------------------------------------------
def _check_member_path(name: str, target: Path, archive: Path) -> Path:
    dest = (target / name).resolve()
    if os.path.isabs(name) or not (dest == target or target in dest.parents):
        raise UnsafeFileError(
            f"archive {archive} contains {name!r}, which would be written outside {target}; "
            "refusing to extract it (the archive is corrupt or malicious: delete it and download again)"
        )
    return dest


def safe_extract(archive: PathLike, target: PathLike) -> list[str]:
    """Extract a ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip`` archive into ``target``.

    Every member is checked before anything is written: absolute paths, ``..`` components,
    links pointing outside ``target`` and device files are refused with
    :class:`~oodml.errors.UnsafeFileError`. Extraction happens into a temporary sibling folder
    that is moved into place member by member only after the whole archive was read, so an
    interrupted extraction leaves no partial tree behind. Returns the top-level names created.
    """
    archive = Path(archive)
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    target_r = target.resolve()
    tmp = Path(tempfile.mkdtemp(prefix=".extract-", dir=target))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    _check_member_path(info.filename, target_r, archive)
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                for m in members:
                    _check_member_path(m.name, target_r, archive)
                    if m.issym() or m.islnk():
                        link_base = (target_r / m.name).parent if m.issym() else target_r
                        _check_member_path(
                            os.path.relpath((link_base / m.linkname).resolve(), target_r)
                            if not os.path.isabs(m.linkname)
                            else m.linkname,
                            target_r,
                            archive,
                        )
                    elif not (m.isfile() or m.isdir()):
                        raise UnsafeFileError(
                            f"archive {archive} contains a special file {m.name!r}; refusing to extract it"
                        )
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, members=members, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tf.extractall(tmp, members=members)
        else:
            raise BadInputError(
                f"{archive} is neither a zip nor a tar archive (is the download truncated? delete it and retry)"
            )
        tops = sorted(os.listdir(tmp))
        for name in tops:
            dest = target / name
            if dest.exists():
                if dest.is_dir() and not dest.is_symlink():
                    shutil.rmtree(dest)
                else:
                    dest.unlink()
            os.replace(tmp / name, dest)
        return tops
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise BadInputError(
            f"archive {archive} is corrupt or truncated ({exc}); delete it and download it again"
        ) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
