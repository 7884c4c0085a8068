"""Fetching the official archives of the benchmark datasets — only ever when asked.

Nothing here runs unless the user passed ``download=True`` (``--download``). Then:

* :func:`download_url` streams one file with :mod:`urllib` into ``<dest>.part``. An existing
  ``.part`` file is resumed with an HTTP ``Range`` request, or ``REST`` for ``ftp://`` URLs
  (SOP's official source) through :mod:`ftplib` (if the server ignores it, the file is
  downloaded again from the start). A progress bar is shown unless ``progress=False``,
  ``--quiet`` or ``OODML_QUIET=1``. The MD5 is verified and only then is the file renamed to
  ``dest``: the final name never holds an unverified or partial file. A truncated transfer keeps
  the ``.part`` file (rerun to resume); a checksum mismatch deletes it. Both raise a one-line
  :class:`~oodml.errors.DownloadError` naming the file, the checksums and what to do. Being
  offline (no route, DNS failure, refused connection) is one line naming the URL and where to
  put the file by hand.
* :data:`SOURCES` lists the official files (URL and MD5) of every downloadable dataset.
* :func:`fetch_dataset` downloads a dataset's files into ``<data root>/<folder>`` (``cub``,
  ``cars``, ``sop``, ``omniglot``) and extracts archives there with
  :func:`oodml.io.safe_extract` (members escaping the folder are refused). A small stamp file
  records each finished extraction, after which the archive is deleted, so an interrupted
  multi-file fetch does not repeat finished work. Each file is fetched under a lock
  (``.<file name>.lock`` next to it, :mod:`filelock`): when several processes ask for the same
  dataset at once (the workers of a study on one machine), one downloads and extracts while the
  others wait, say so on stderr, and then find the stamp and skip the file.
* :func:`find_dataset_dir` is the root resolution every loader shares: look in a few candidate
  folders, fetch when asked, or raise one clear :class:`~oodml.errors.DatasetNotFoundError`.

Mirrors: set ``OODML_DOWNLOAD_MIRROR=<base url>`` (or pass ``mirror=``) to fetch every file as
``<base url>/<file name>`` instead of from its official URL (tests point it at a local server).
Without network, download a file by hand and save it under the name the error message gives;
``--download`` then verifies and uses it without connecting.

Example::

    from oodml.datasets.download import fetch_dataset
    folder = fetch_dataset("cub", root="~/data")      # ~/data/cub/CUB_200_2011/...
    print(sorted(p.name for p in folder.iterdir()))
"""

from __future__ import annotations

import contextlib
import ftplib
import http.client
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from oodml.datasets import canonical_name
from oodml.errors import DatasetNotFoundError, DownloadError, OodmlError
from oodml.io import file_digest, read_json, safe_extract, write_json
from oodml.paths import data_root, data_root_source
from oodml.progress import progress_bar

#: Environment variable naming a base URL that replaces every official URL's folder.
MIRROR_ENV = "OODML_DOWNLOAD_MIRROR"

_CHUNK = 1 << 16


@dataclass(frozen=True)
class Source:
    """One official file: its name on disk, URL, MD5 (``None`` if unpublished), whether it is an
    archive to extract, and whether :func:`fetch_dataset` takes it when no files are named."""

    filename: str
    url: str
    md5: str | None = None
    extract: bool = True
    default: bool = True


@dataclass(frozen=True)
class DatasetSource:
    """Where a dataset comes from and which sub-folder of the data root it is fetched into."""

    title: str
    folder: str
    files: tuple[Source, ...]
    homepage: str


_OMNIGLOT = "https://github.com/brendenlake/omniglot/raw/master/python/"

#: Official sources of every downloadable dataset (registry name -> files).
SOURCES: dict[str, DatasetSource] = {
    "cub": DatasetSource(
        "CUB-200-2011",
        "cub",
        (
            Source(
                "CUB_200_2011.tgz",
                "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz",
                "97eceeb196236b17998738112f37df78",
            ),
        ),
        "https://www.vision.caltech.edu/datasets/cub_200_2011/",
    ),
    "cars": DatasetSource(
        "Stanford Cars (CARS196)",
        "cars",
        (
            Source(
                "car_ims.tgz",
                "http://ai.stanford.edu/~jkrause/car196/car_ims.tgz",
                "d5c8f0aa497503f355e17dc7886c3f14",
            ),
            Source(
                "cars_annos.mat",
                "http://ai.stanford.edu/~jkrause/car196/cars_annos.mat",
                "b407c6086d669747186bd1d764ff9dbc",
                extract=False,
            ),
        ),
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html",
    ),
    "sop": DatasetSource(
        "Stanford Online Products",
        "sop",
        (
            Source(
                "Stanford_Online_Products.zip",
                "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
                "7f73d41a2f44250d4779881525aea32e",
            ),
        ),
        "https://cvgl.stanford.edu/projects/lifted_struct/",
    ),
    "omniglot": DatasetSource(
        "Omniglot",
        "omniglot",
        (
            Source("images_background.zip", _OMNIGLOT + "images_background.zip", "68d2efa1b9178cc56df9314c21c6e718"),
            Source("images_evaluation.zip", _OMNIGLOT + "images_evaluation.zip", "6b91aef0f799c5bb55b94e3f2daec811"),
            Source("images_background_small1.zip", _OMNIGLOT + "images_background_small1.zip", None, default=False),
            Source("images_background_small2.zip", _OMNIGLOT + "images_background_small2.zip", None, default=False),
        ),
        "https://github.com/brendenlake/omniglot",
    ),
}


# --------------------------------------------------------------------------------------------
# One file
# --------------------------------------------------------------------------------------------
def _hand_hint(url: str, dest: Path) -> str:
    return (
        f"if this machine cannot reach it, download {url} by hand (e.g. on another machine), save it as "
        f"{dest} and rerun with --download (it is then verified and used without connecting)"
    )


def _connection_error(url: str, dest: Path, exc: BaseException) -> DownloadError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"the server answered HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        reason = f"no connection ({exc.reason})"
    else:
        reason = f"no connection ({type(exc).__name__}: {exc})"
    reason = " ".join(str(reason).split())  # keep the message on one line
    return DownloadError(f"cannot download {url}: {reason}; {_hand_hint(url, dest)}")


def _parse_content_range_start(value: str | None) -> int | None:
    """``bytes 100-199/200`` -> 100 (``None`` if absent or malformed)."""
    if not value or not value.strip().lower().startswith("bytes"):
        return None
    try:
        return int(value.strip()[5:].strip().split("-", 1)[0])
    except ValueError:
        return None


class _FtpResponse:
    """An ``ftp://`` transfer that looks like the HTTP responses :func:`download_url` reads.

    urllib's FTP handler cannot resume; this one sends ``REST <offset>`` before ``RETR`` and then
    answers like an HTTP server honouring a ``Range`` request (status 206, ``Content-Range``,
    ``Content-Length`` from ``SIZE``). A server that refuses ``REST`` gets a full transfer (200),
    which the caller writes from the start. Anonymous login unless the URL carries user:password.
    """

    def __init__(self, url: str, offset: int, timeout: float):
        from urllib.parse import unquote, urlsplit

        parts = urlsplit(url)
        if not parts.hostname or not parts.path or parts.path.endswith("/"):
            raise ValueError(f"no file in FTP URL {url!r}")
        self._ftp = ftplib.FTP(timeout=timeout)
        self._conn = None
        try:
            self._ftp.connect(parts.hostname, parts.port or 21)
            self._ftp.login(unquote(parts.username or "anonymous"), unquote(parts.password or "anonymous@"))
            self._ftp.voidcmd("TYPE I")
            path = unquote(parts.path)
            try:
                size = self._ftp.size(path)
            except ftplib.error_perm:
                size = None  # SIZE not supported (or no such file: RETR says which)
            self.headers: dict[str, str] = {}
            self.status = 200
            if offset and size is not None and offset == size:
                self.status = 206  # nothing left to send: the caller checks what it has
                self.headers.update({"Content-Range": f"bytes {offset}-{size - 1}/{size}", "Content-Length": "0"})
                return
            start = offset if offset and (size is None or offset < size) else 0
            if start:
                try:
                    self._conn = self._ftp.transfercmd(f"RETR {path}", rest=start)
                    self.status = 206
                    self.headers["Content-Range"] = f"bytes {start}-{'' if size is None else size - 1}/{size or '*'}"
                except (ftplib.error_reply, ftplib.error_perm):  # REST refused (e.g. 502): send it all
                    start = 0
                    self.headers.pop("Content-Range", None)
            if self._conn is None:
                self._conn = self._ftp.transfercmd(f"RETR {path}")
            if size is not None:
                self.headers["Content-Length"] = str(size - start)
        except (ftplib.Error, EOFError) as exc:
            self.close()
            reason = " ".join(str(exc).split())
            raise urllib.error.URLError(f"FTP server said {reason!r}") from None
        except BaseException:
            self.close()
            raise

    def getcode(self) -> int:
        return self.status

    def read(self, n: int) -> bytes:
        return self._conn.recv(n) if self._conn is not None else b""

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            try:
                self._ftp.voidresp()  # 226 Transfer complete (or an abort reply)
            except (ftplib.Error, OSError, EOFError):
                pass
        try:
            self._ftp.quit()
        except (ftplib.Error, OSError, EOFError, AttributeError):
            self._ftp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _open(url: str, offset: int, timeout: float):
    if url[:6].lower() == "ftp://":
        return _FtpResponse(url, offset, timeout)
    headers = {"User-Agent": "oodml-downloader/1"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _existing_is_right(dest: Path, want: str | None, url: str) -> bool:
    """Whether ``dest`` already exists and is the expected file (a mismatch is an error)."""
    if not dest.exists():
        return False
    if want is None:
        return True
    actual = file_digest(dest)
    if actual == want:
        return True
    raise DownloadError(
        f"{dest} exists but its MD5 is {actual}, expected {want}: it is not the file from {url} "
        "(corrupt or a different version); delete it and rerun with --download"
    )


def _connect(url: str, dest: Path, part: Path, offset: int, want: str | None, attempt: int, timeout: float):
    """The response for the bytes from ``offset`` on; ``"done"`` when the partial file is already
    complete, ``None`` to start over (the partial file was deleted)."""
    try:
        return _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset and attempt == 0:
            # Nothing left past our offset: the partial file may be complete already.
            if want is not None and file_digest(part) == want:
                return "done"
            part.unlink()
            return None
        raise _connection_error(url, dest, exc) from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _connection_error(url, dest, exc) from None
    except ValueError as exc:  # e.g. a mirror given without http://
        raise DownloadError(f"cannot download {url!r}: not a valid URL ({exc}); check ${MIRROR_ENV}") from None


def _resuming(resp, offset: int, part: Path, url: str, attempt: int) -> bool | None:
    """Whether the answer continues our partial file (True), replaces it (False), or cannot be
    spliced onto it (None: the partial file was deleted, try again)."""
    if not (offset and resp.getcode() == 206):
        return False
    start = _parse_content_range_start(resp.headers.get("Content-Range"))
    if start == offset:
        return True
    part.unlink()  # an answer we cannot splice onto our bytes: start over
    if attempt == 0:
        return None
    raise DownloadError(
        f"cannot resume {url}: the server answered a range request with the wrong range; "
        f"delete {part} and rerun with --download"
    )


def _announced_total(resp, start_at: int) -> int | None:
    length = resp.headers.get("Content-Length") if resp.headers is not None else None
    try:
        return start_at + int(length) if length is not None else None
    except ValueError:
        return None


def _write_body(resp, part: Path, append: bool, total: int | None, start_at: int, name: str, progress: bool):
    """Stream the body into ``part``; returns why the connection broke mid-transfer, or None."""
    broken: str | None = None
    bar = progress_bar(
        total=total,
        initial=start_at,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=name,
        enabled=progress,
        delay=0,
    )
    try:
        with open(part, "ab" if append else "wb") as fh:
            while True:
                try:
                    block = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:
                    broken = f"{type(exc).__name__}: {exc}"
                    break
                if not block:
                    break
                fh.write(block)
                bar.update(len(block))
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        bar.close()
    return broken


def _check_transfer(part: Path, total: int | None, broken: str | None, url: str, want: str | None) -> None:
    """A truncated transfer keeps its partial file (to resume); an over-long one deletes it."""
    size = part.stat().st_size
    if broken is not None or (total is not None and size < total):
        got = file_digest(part)
        what = f"{size} of {total} bytes" if total is not None else f"{size} bytes"
        why = " after " + " ".join(broken.split()) if broken else ""
        raise DownloadError(
            f"download of {url} was truncated{why}: {part} holds {what} "
            f"(MD5 so far {got}, expected {want or 'unpublished'}); the partial file is kept: "
            "rerun with --download to resume it"
        )
    if total is not None and size > total:
        part.unlink()
        raise DownloadError(
            f"download of {url} is longer than announced ({size} > {total} bytes); the partial file "
            "was deleted: rerun with --download"
        )


def download_url(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``md5``, rename atomically.

    If ``dest`` already exists it is verified and returned without connecting (a mismatch is an
    error: it is not the expected file). Returns ``dest`` as a :class:`~pathlib.Path`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    want = md5.lower() if md5 else None
    if _existing_is_right(dest, want, url):
        return dest
    part = Path(str(dest) + ".part")

    for attempt in range(2):
        offset = part.stat().st_size if part.exists() else 0
        resp = _connect(url, dest, part, offset, want, attempt, timeout)
        if resp == "done":
            break
        if resp is None:
            continue
        with resp:
            resuming = _resuming(resp, offset, part, url, attempt)
            if resuming is None:
                continue
            start_at = offset if resuming else 0
            total = _announced_total(resp, start_at)
            broken = _write_body(resp, part, resuming, total, start_at, dest.name, progress)
        _check_transfer(part, total, broken, url, want)
        break

    if want is not None:
        actual = file_digest(part)
        if actual != want:
            part.unlink()
            raise DownloadError(
                f"checksum mismatch for {dest.name} from {url}: MD5 {actual}, expected {want}; the corrupt "
                f"download was deleted: rerun with --download, or {_hand_hint(url, dest)}"
            )
    os.replace(part, dest)
    return dest


# --------------------------------------------------------------------------------------------
# One dataset
# --------------------------------------------------------------------------------------------
def source_for(name: str) -> DatasetSource:
    """The official sources of dataset ``name`` (registry name or alias)."""
    key = canonical_name(name)
    if key not in SOURCES:
        raise OodmlError(
            f"dataset {key!r} has nothing to download (downloadable: {', '.join(SOURCES)}); "
            "point --root at your files instead"
        )
    return SOURCES[key]


def _mirror_url(src: Source, mirror: str | None) -> str:
    mirror = mirror if mirror is not None else os.environ.get(MIRROR_ENV) or None
    if not mirror:
        return src.url
    return mirror.rstrip("/") + "/" + src.filename


def fetch_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    files: Iterable[str] | None = None,
    mirror: str | None = None,
    progress: bool = True,
) -> Path:
    """Download and safely extract dataset ``name`` into ``<data root>/<folder>``; return it.

    ``files`` picks file names from the dataset's :data:`SOURCES` entry (default: its default
    files, e.g. Omniglot's background and evaluation sets). Finished extractions are recorded in
    ``.<archive>.extracted`` stamps and skipped on later calls.
    """
    spec = source_for(name)
    target = data_root(root) / spec.folder
    if files is None:
        chosen = [s for s in spec.files if s.default]
    else:
        wanted = list(files)
        by_name = {s.filename: s for s in spec.files}
        unknown = [f for f in wanted if f not in by_name]
        if unknown:
            raise OodmlError(f"{spec.title} has no official file {unknown[0]!r}; files: {', '.join(by_name)}")
        chosen = [by_name[f] for f in wanted]
    target.mkdir(parents=True, exist_ok=True)
    for src in chosen:
        dest = target / src.filename
        stamp = target / f".{src.filename}.extracted"
        if src.extract and _extracted(stamp, target):
            continue
        with _file_lock(target / f".{src.filename}.lock", src.filename):
            if src.extract and _extracted(stamp, target):  # another process finished it meanwhile
                continue
            download_url(_mirror_url(src, mirror), dest, src.md5, progress=progress)
            if src.extract:
                names = safe_extract(dest, target)
                write_json(stamp, {"archive": src.filename, "md5": src.md5, "names": names})
                dest.unlink()
    return target


def _extracted(stamp: Path, target: Path) -> bool:
    """True if ``stamp`` records a finished extraction whose members are all still there."""
    if not stamp.is_file():
        return False
    try:
        names = read_json(stamp, "extraction stamp").get("names", [])
    except (OodmlError, AttributeError):
        return False
    return bool(names) and all((target / n).exists() for n in names)


@contextlib.contextmanager
def _file_lock(path: Path, what: str):
    """Exclusive inter-process lock on ``path`` (filelock); tells stderr when it has to wait."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"oodml: waiting for another process that is fetching {what} (lock {path})", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# --------------------------------------------------------------------------------------------
# Root resolution shared by the loaders
# --------------------------------------------------------------------------------------------
def candidate_dirs(base: Path, subdirs: Sequence[str]) -> list[Path]:
    """``base`` joined with each relative sub-folder (``""`` is ``base`` itself), de-duplicated."""
    out: list[Path] = []
    for sub in subdirs:
        p = base / sub if sub else base
        if p not in out:
            out.append(p)
    return out


def not_found_message(
    name: str,
    root: str | os.PathLike | None,
    searched: Sequence[Path],
    layout: str,
    files: Iterable[str] | None = None,
) -> str:
    """The one-line message of a missing dataset: what, where we looked, what we expect, how to get it."""
    spec = SOURCES.get(name)
    title = f"{spec.title} ({name})" if spec else name
    where = ", ".join(str(p) for p in searched)
    msg = (
        f"{title} dataset not found: searched {where} (data root {data_root(root)} from "
        f"{data_root_source(root)}); expected {layout}"
    )
    if spec is not None:
        chosen = [s for s in spec.files if (s.default if files is None else s.filename in set(files))]
        urls = " and ".join(s.url for s in chosen)
        msg += (
            f"; get it with --download (into {data_root(root) / spec.folder}), or download {urls} by hand, "
            "unpack so that this layout is in one of the folders searched and pass the data root with --root"
        )
    else:
        msg += "; pass the right folder with --root"
    return msg


def find_dataset_dir(
    name: str,
    root: str | os.PathLike | None,
    subdirs: Sequence[str],
    is_dataset: Callable[[Path], bool],
    layout: str,
    download: bool = False,
    files: Iterable[str] | None = None,
    progress: bool = True,
) -> Path:
    """The first of ``data_root(root) / subdir`` that ``is_dataset`` accepts.

    When none does: with ``download=True`` fetch the dataset (then look again), otherwise raise
    :class:`~oodml.errors.DatasetNotFoundError` with :func:`not_found_message`.
    """
    searched = candidate_dirs(data_root(root), subdirs)
    for p in searched:
        if is_dataset(p):
            return p
    if download:
        files = list(files) if files is not None else None
        fetch_dataset(name, root, files=files, progress=progress)
        for p in searched:
            if is_dataset(p):
                return p
        raise DatasetNotFoundError(
            f"{name}: the downloaded files were extracted into {data_root(root) / SOURCES[name].folder} but "
            f"do not have the expected layout ({layout}); delete that folder and retry, or report the problem"
        )
    raise DatasetNotFoundError(not_found_message(name, root, searched, layout, files))


__all__ = [
    "MIRROR_ENV",
    "SOURCES",
    "DatasetSource",
    "Source",
    "candidate_dirs",
    "download_url",
    "fetch_dataset",
    "find_dataset_dir",
    "not_found_message",
    "source_for",
]
