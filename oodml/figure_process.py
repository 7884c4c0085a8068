"""The split figure's drawing process, started before ``python -m oodml.make_splits`` imports its code.

The figure is drawn by a child process (:mod:`oodml.splits.figure_worker`) that spends about 1 s of
CPU importing oodml's split code and matplotlib before it can draw.  Started by the command itself,
after its own imports (≈ 0.25 s), the child was still importing when the series was ready, and the
command waited for it.  So ``oodml/make_splits.py`` calls :func:`start_early` first, before any of
its imports; :class:`~oodml.splits.figure_worker.FigureWorker` adopts that process
(:func:`take_early`), or starts one itself when there is none.

:func:`start_early` only guesses from the raw arguments whether a figure will be drawn (not for
``--check``, ``--import-oodml``, ``--figure none``, ``--help`` or ``--version``); the command
decides once its options are parsed, and a process it does not adopt is stopped when it exits.
This module imports nothing from oodml, so that starting the child costs the command nothing.
"""

from __future__ import annotations

import atexit
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["discard_early", "spawn", "start_early", "take_early", "wants_figure"]

#: The drawing process (see :mod:`oodml.splits.figure_worker`).
COMMAND = (sys.executable, "-m", "oodml.splits.figure_worker")

#: Options after which ``make_splits`` draws no split figure through the child.
_NO_FIGURE = ("-h", "--help", "--version", "--check", "--import-oodml")

_early: subprocess.Popen | None = None


def spawn() -> subprocess.Popen:
    """Start the drawing process (it waits for a request on its standard input)."""
    return subprocess.Popen(
        list(COMMAND), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def wants_figure(argv: Sequence[str]) -> bool:
    """Whether these ``make_splits`` arguments look like a build that draws its figure (a guess:
    abbreviated options are not recognised, and the command decides after parsing them)."""
    args = list(argv)
    for i, arg in enumerate(args):
        name, _, value = arg.partition("=")
        if name in _NO_FIGURE:
            return False
        if name == "--figure" and (value or (args[i + 1] if i + 1 < len(args) else "")).lower() == "none":
            return False
    return True


def start_early(argv: Sequence[str]) -> None:
    """Start the drawing process now if ``argv`` will draw a figure (no process: nothing happens)."""
    global _early
    if _early is not None or not wants_figure(argv):
        return
    try:
        _early = spawn()
    except OSError:  # no child processes here: the command draws the figure itself
        return
    atexit.register(discard_early)


def take_early() -> subprocess.Popen | None:
    """The process :func:`start_early` started, if it is still running and not yet taken."""
    global _early
    proc, _early = _early, None
    if proc is not None and proc.poll() is not None:
        return None
    return proc


def discard_early() -> None:
    """Stop the early process if nothing adopted it (the command draws no figure through it)."""
    proc = take_early()
    if proc is not None:
        proc.kill()
        proc.communicate()
