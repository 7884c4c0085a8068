"""A ``--features-file`` read in a thread while ``python -m oodml.make_splits`` imports its code.

Reading a CUB-sized table (98 MB) costs the command about 0.3 s in a fresh process, and importing
the split code (scipy.linalg alone ≈ 0.3 s) about as much again.  Most of the reading runs without
the GIL (``readinto``, CRC-32, SHA-256 and numpy's reductions), so the two overlap: the entry
points call :func:`start` with the raw arguments before their imports, and
:func:`load_features_file` (what the command calls) returns the table read in the background, or
raises the one-line error that reading it gave.  Measured on the 2-core machine: imports plus
reading went from ≈ 0.85 s to ≈ 0.55 s.

:func:`start` only guesses from the raw arguments (``--features-file PATH`` or
``--features-file=PATH``; nothing for ``--help`` or ``--version``); a table read for nothing is
dropped with the process.  :mod:`oodml.features.files` is imported with this module, before the
thread starts, so the thread imports nothing while the main thread does.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

from oodml.features import files

__all__ = ["features_file_argument", "load_features_file", "start"]

_lock = threading.Lock()
_pending: dict[str, dict] = {}  # absolute path -> {"thread", "result" or "error"}


def features_file_argument(argv: Sequence[str]) -> str | None:
    """The value of ``--features-file`` in raw arguments (None: absent, or ``--help``/``--version``)."""
    args = list(argv)
    found = None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in ("-h", "--help", "--version"):
            return None
        if name == "--features-file":
            found = value if eq else (args[i + 1] if i + 1 < len(args) else None)
    return found or None


def _key(path) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def start(argv: Sequence[str]) -> None:
    """Start reading the ``--features-file`` of ``argv`` in a daemon thread (if there is one)."""
    path = features_file_argument(argv)
    if path is None:
        return
    key = _key(path)
    with _lock:
        if key in _pending:
            return
        slot: dict = {}
        _pending[key] = slot

    def read() -> None:
        try:
            slot["result"] = files.load_features_file(path)
        except BaseException as exc:  # handed to the caller of load_features_file, raised there
            slot["error"] = exc

    slot["thread"] = threading.Thread(target=read, name="oodml-features-prefetch", daemon=True)
    slot["thread"].start()


def load_features_file(path):
    """:func:`oodml.features.files.load_features_file` of ``path``: the table :func:`start` read for
    it (once; waits for the thread), else read now."""
    with _lock:
        slot = _pending.pop(_key(path), None)
    if slot is None:
        return files.load_features_file(path)
    slot["thread"].join()
    if "error" in slot:
        raise slot["error"]
    return slot["result"]
