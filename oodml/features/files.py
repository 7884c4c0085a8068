"""Feature tables as files, without torch: :class:`FeatureSet`, deterministic ``.npz`` bytes, and
a user's own table (``--features-file``) read and written without executing code.

Kept apart from the rest of :mod:`oodml.features` (extractors, caches, torch models) so that a command given a
feature file (``python -m oodml.make_splits --features-file F``) never imports torch or timm; every
name here is also importable from :mod:`oodml.features`.
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from oodml.errors import BadInputError
from oodml.io import atomic_open

PathLike = str | os.PathLike

#: Version tag hashed into a features file's fingerprint.
FEATURES_FILE_VERSION = 1


# ============================================================================================
# Feature tables
# ============================================================================================
@dataclass
class FeatureSet:
    """A feature table with its labels.

    ``features``: ``(n, d)`` float32; ``labels``: class name of each row; ``superclasses``:
    superclass name of each row (``None`` entries allowed) or ``None`` when there are none;
    ``classes``: the ordered class list (``class_ids()`` indexes into it); ``extractor``: the
    extractor name (``"file"`` for a user's table); ``source``: ``"dataset:<name>"`` or the
    ``.npz`` path; ``fingerprint``: the dataset fingerprint, or a SHA-256 over a features
    file's arrays.
    """

    features: np.ndarray
    labels: list[str]
    superclasses: list[str | None] | None
    classes: list[str]
    extractor: str
    source: str
    fingerprint: str

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    def class_ids(self) -> np.ndarray:
        """Index into :attr:`classes` of every row, ``int64``, shape ``(n,)``."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.fromiter((index[lab] for lab in self.labels), dtype=np.int64, count=len(self.labels))

    def indices_by_class(self) -> dict[str, np.ndarray]:
        """Row ids of each class, in class order."""
        ids = self.class_ids()
        order = np.argsort(ids, kind="stable")
        bounds = np.searchsorted(ids[order], np.arange(len(self.classes) + 1))
        return {c: order[bounds[i] : bounds[i + 1]] for i, c in enumerate(self.classes)}


def standard_split_for_features(fs: FeatureSet) -> tuple[list[str], list[str]]:
    """The standard split of a user's feature table: classes sorted by name, the first half
    (rounded up) train, the rest test."""
    classes = sorted(fs.classes)
    half = (len(classes) + 1) // 2
    return classes[:half], classes[half:]


# ---- deterministic .npz --------------------------------------------------------------------
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """The bytes of an uncompressed ``.npz`` holding ``arrays`` (in the given order), with fixed
    member dates and permissions: identical arrays give identical bytes.  Readable with
    ``np.load(..., allow_pickle=False)``."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        for key, arr in arrays.items():
            arr = np.asarray(arr)
            if arr.dtype.hasobject:
                raise TypeError(f"array {key!r} has dtype object; cannot be stored without pickle")
            member = io.BytesIO()
            contiguous = arr if arr.flags.c_contiguous else arr.copy(order="C")  # keeps 0-d arrays 0-d
            np.lib.format.write_array(member, contiguous, allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = zipfile.ZIP_STORED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _write_npz(path: PathLike, arrays: dict[str, np.ndarray]) -> None:
    data = npz_bytes(arrays)
    with atomic_open(path, "wb") as fh:
        fh.write(data)


# ============================================================================================
# Bring your own features
# ============================================================================================
FEATURES_FILE_LAYOUT = (
    "an .npz with 'features' (n x d float array), 'labels' (n class names) and optionally "
    "'superclasses' (n names), saved with np.savez"
)


def _string_column(arr: np.ndarray, key: str, path: Path, n: int, allow_int: bool) -> list[str]:
    if arr.shape != (n,):
        raise BadInputError(
            f"features file {path}: '{key}' has shape {arr.shape}, expected ({n},) to match 'features' ({n} rows)"
        )
    if arr.dtype.kind == "U":
        return [str(x) for x in arr.tolist()]
    if arr.dtype.kind == "S":
        try:
            return [bytes(x).decode("utf-8") for x in arr.tolist()]
        except UnicodeDecodeError:
            raise BadInputError(f"features file {path}: '{key}' holds bytes that are not UTF-8 text") from None
    if allow_int and arr.dtype.kind in "iu":
        return [str(int(x)) for x in arr.tolist()]
    raise BadInputError(
        f"features file {path}: '{key}' has dtype {arr.dtype}; expected strings "
        f"(np.array(names, dtype=str)){' or integers' if allow_int else ''}"
    )


def features_fingerprint(features: np.ndarray, labels: Sequence[str], superclasses: Sequence[str | None] | None) -> str:
    """SHA-256 over a feature table: the float32 features (shape and little-endian bytes), the
    labels and the superclasses."""
    h = hashlib.sha256()
    f = np.ascontiguousarray(features, dtype="<f4")
    h.update(f"oodml-features-v{FEATURES_FILE_VERSION}\n{f.shape[0]} {f.shape[1]}\n".encode())
    h.update(memoryview(f).cast("B"))  # the same bytes, without a copy of the table
    h.update(("\n" + "\x1f".join(labels) + "\n").encode("utf-8"))
    if superclasses is not None:
        h.update(("\x1f".join("" if s is None else s for s in superclasses) + "\n").encode("utf-8"))
    return h.hexdigest()


def _open_npz(p: Path) -> np.lib.npyio.NpzFile:
    """The archive at ``p``, opened without pickles, or one clear error."""
    if not p.exists():
        raise BadInputError(f"features file {p} does not exist; check the path")
    if p.is_dir():
        raise BadInputError(f"features file {p} is a folder; expected {FEATURES_FILE_LAYOUT}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except ValueError as exc:
        if "pickled" in str(exc):  # neither .npz nor .npy: np.load would need to unpickle it
            raise BadInputError(
                f"features file {p} is not a readable .npz (not a zip archive; a pickle or another format), "
                f"and pickles are never loaded; expected {FEATURES_FILE_LAYOUT}"
            ) from None
        raise BadInputError(
            f"features file {p} is not a readable .npz ({exc}); expected {FEATURES_FILE_LAYOUT}"
        ) from None
    except Exception as exc:
        raise BadInputError(
            f"features file {p} is not a readable .npz ({type(exc).__name__}); expected {FEATURES_FILE_LAYOUT}"
        ) from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise BadInputError(
            f"features file {p} holds a single array, not an .npz archive; expected {FEATURES_FILE_LAYOUT}"
        )
    return loaded


#: A zip local file header: signature, 22 bytes we skip, the name's and the extra field's lengths.
_LOCAL_HEADER = struct.Struct("<4s22xHH")


def _stored_member(p: Path, loaded: np.lib.npyio.NpzFile, key: str) -> np.ndarray | None:
    """Member ``key`` of an uncompressed archive (``np.savez``), read with one ``readinto``.

    ``np.load`` copies a member through zipfile's 256 KB reads and then into the array (≈ 0.3 s of a
    98 MB CUB-sized table); this reads the bytes straight into the array and checks the member's
    CRC-32 as zipfile would.  ``None`` when this path does not apply (a compressed, encrypted or
    Fortran-ordered member, an object dtype, a header version it does not parse, sizes that do not
    add up): the caller then reads the member through ``np.load``, with its errors."""
    try:
        info = loaded.zip.getinfo(key + ".npy")
    except (AttributeError, KeyError):
        return None
    if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 0x1:
        return None
    fmt = np.lib.format
    with open(p, "rb") as fh:
        fh.seek(info.header_offset)
        head = fh.read(_LOCAL_HEADER.size)
        if len(head) != _LOCAL_HEADER.size:
            return None
        signature, name_len, extra_len = _LOCAL_HEADER.unpack(head)
        if signature != b"PK\x03\x04":
            return None
        start = info.header_offset + _LOCAL_HEADER.size + name_len + extra_len
        fh.seek(start)
        version = fmt.read_magic(fh)
        if version not in ((1, 0), (2, 0)):
            return None
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran_order, dtype = read_header(fh)
        header_len = fh.tell() - start
        count = int(np.prod(shape, dtype=np.int64))
        if dtype.hasobject or fortran_order or header_len + count * dtype.itemsize != info.file_size:
            return None
        fh.seek(start)
        header = fh.read(header_len)
        arr = np.empty(count, dtype=dtype)
        raw = arr.view(np.uint8)
        if fh.readinto(raw) != raw.size:
            return None
    if zlib.crc32(raw, zlib.crc32(header)) != info.CRC:
        raise BadInputError(f"features file {p}: '{key}' is corrupt (its CRC-32 does not match); write the file again")
    return arr.reshape(shape)


def _read_arrays(p: Path, loaded: np.lib.npyio.NpzFile) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``features``, ``labels`` and (if present) ``superclasses`` of the archive, then closed."""

    def _get(key: str) -> np.ndarray:
        try:
            fast = _stored_member(p, loaded, key) if key == "features" else None
            if fast is not None:
                return fast
            return loaded[key]
        except BadInputError:
            raise
        except ValueError as exc:
            if "allow_pickle" in str(exc) or "Object arrays" in str(exc):
                raise BadInputError(
                    f"features file {p}: '{key}' is an object array (Python objects); refusing to unpickle: "
                    "save it as a plain array (labels as np.array(names, dtype=str))"
                ) from None
            raise BadInputError(f"features file {p}: '{key}' cannot be read ({exc})") from None
        except Exception as exc:
            raise BadInputError(f"features file {p}: '{key}' cannot be read ({type(exc).__name__}: {exc})") from None

    with loaded:
        keys = set(loaded.files)
        for key in ("features", "labels"):
            if key not in keys:
                found = ", ".join(sorted(keys)) or "nothing"
                raise BadInputError(
                    f"features file {p} has no '{key}' array (found: {found}); expected {FEATURES_FILE_LAYOUT}"
                )
        return _get("features"), _get("labels"), (_get("superclasses") if "superclasses" in keys else None)


def _checked_features(p: Path, feats: np.ndarray) -> np.ndarray:
    """The ``(n, d)`` table as C-contiguous float32, every row finite."""
    if feats.ndim != 2 or feats.shape[0] == 0 or feats.shape[1] == 0:
        raise BadInputError(f"features file {p}: 'features' has shape {feats.shape}; expected a non-empty (n, d) array")
    if feats.dtype.kind not in "fiu":
        raise BadInputError(f"features file {p}: 'features' has dtype {feats.dtype}; expected floating point numbers")
    with np.errstate(over="ignore", invalid="ignore"):
        f32 = np.ascontiguousarray(feats, dtype=np.float32)
    # a row is finite iff its float64 sum is (float32 values cannot overflow it; NaN and ±inf carry through)
    bad = ~np.isfinite(np.add.reduce(f32, axis=1, dtype=np.float64))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise BadInputError(
            f"features file {p}: {int(bad.sum())} rows of 'features' hold NaN/inf (or values beyond float32), "
            f"first row {first}; fix or drop them"
        )
    return f32


def _checked_labels(p: Path, labels_arr: np.ndarray, n: int) -> tuple[list[str], list[str]]:
    """The ``n`` class names and the sorted classes (at least two, none empty)."""
    labels = _string_column(labels_arr, "labels", p, n, allow_int=True)
    empty = [i for i, s in enumerate(labels) if s == ""]
    if empty:
        raise BadInputError(f"features file {p}: 'labels' row {empty[0]} is empty; every row needs a class name")
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise BadInputError(f"features file {p}: 'labels' names {len(classes)} class; at least 2 classes are needed")
    return labels, classes


def _checked_superclasses(p: Path, sup_arr: np.ndarray | None, labels: list[str]) -> list[str | None] | None:
    """One superclass (or ``None``) per row, consistent within each class; ``None`` if there are none."""
    if sup_arr is None:
        return None
    sups = _string_column(sup_arr, "superclasses", p, len(labels), allow_int=True)
    superclasses: list[str | None] = [s if s != "" else None for s in sups]
    seen: dict[str, str | None] = {}
    for i, (lab, sup) in enumerate(zip(labels, superclasses)):
        prev = seen.setdefault(lab, sup)
        if prev != sup:
            raise BadInputError(
                f"features file {p}: class {lab!r} is listed under two superclasses ({prev!r} and {sup!r}, "
                f"row {i}); each class needs one superclass"
            )
    return None if all(s is None for s in superclasses) else superclasses


def load_features_file(path: PathLike) -> FeatureSet:
    """Read a user's feature table (see :data:`FEATURES_FILE_LAYOUT`) without executing code.

    ``labels`` may be strings (or integers, taken as their decimal names); classes are ordered by
    sorted name; an empty ``superclasses`` entry means "none".  Every problem (missing file or
    key, wrong shape or dtype, non-finite value, Python objects, fewer than two classes) is one
    :class:`~oodml.errors.BadInputError` line naming the file.
    """
    p = Path(path).expanduser()
    feats, labels_arr, sup_arr = _read_arrays(p, _open_npz(p))
    f32 = _checked_features(p, feats)
    labels, classes = _checked_labels(p, labels_arr, int(f32.shape[0]))
    superclasses = _checked_superclasses(p, sup_arr, labels)
    return FeatureSet(
        features=f32,
        labels=labels,
        superclasses=superclasses,
        classes=classes,
        extractor="file",
        source=str(p),
        fingerprint=features_fingerprint(f32, labels, superclasses),
    )


def save_features_file(fs: FeatureSet, path: PathLike) -> Path:
    """Write ``fs`` in the format :func:`load_features_file` reads (atomically, byte-identical
    for identical tables); ``None`` superclasses are stored as empty strings."""
    p = Path(path).expanduser()
    arrays: dict[str, np.ndarray] = {
        "features": np.ascontiguousarray(fs.features, dtype=np.float32),
        "labels": np.array(list(fs.labels), dtype=str),
    }
    if fs.superclasses is not None:
        arrays["superclasses"] = np.array(["" if s is None else s for s in fs.superclasses], dtype=str)
    _write_npz(p, arrays)
    return p
