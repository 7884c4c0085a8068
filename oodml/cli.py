"""Helpers shared by the thin command-line entry points (``python -m oodml.<stage>``)."""

from __future__ import annotations

import argparse
import atexit
import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from oodml import __version__
from oodml.device import DEVICE_HELP
from oodml.errors import OodmlError
from oodml.progress import progress_disabled

__all__ = ["add_device", "add_extractor", "add_quiet", "add_version", "exit_process", "progress_disabled", "run_cli"]


def run_cli(main: Callable[[list[str] | None], int | None]) -> Callable[[list[str] | None], int]:
    """Wrap a CLI ``main(argv)``: a user-fixable :class:`OodmlError` is printed as one line
    (``error: ...``) on stderr with exit status 2, without a traceback. Bugs keep theirs."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            code = main(argv)
        except OodmlError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
        return int(code or 0)

    return wrapper


def _launched_directly() -> bool:
    """Whether nothing but Python's launcher runs below the caller (``python -m``, or a console
    script's file): no profiler, coverage, debugger or wrapping script (``runpy.run_module``)
    whose own code still has to run after the command returns."""
    if sys.gettrace() is not None or sys.getprofile() is not None:
        return False
    package = os.path.dirname(os.path.abspath(__file__)) + os.sep
    frame = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        own = code.co_filename.startswith(package)
        launcher = "runpy" in code.co_filename and code.co_name in ("_run_code", "_run_module_as_main")
        script = frame.f_back is None and code.co_name == "<module>" and not code.co_filename.startswith("<")
        if not (own or launcher or script):
            return False
        frame = frame.f_back
    return True


def exit_process(code: int) -> NoReturn:
    """End a command's process with ``code``.  Launched directly (:func:`_launched_directly`): flush
    stdout and stderr, run the ``atexit`` handlers, then ``os._exit``, skipping the interpreter's
    teardown (freeing every module and array: ≈ 0.1 s after ``make_splits`` on a CUB-sized table,
    a twentieth of the command).  Under a profiler or a wrapping script: ``SystemExit`` as usual,
    so that their code runs.  Only for commands that leave no thread or buffered writer behind
    (``make_splits``)."""
    if not _launched_directly():
        raise SystemExit(int(code))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`| head`) or stream: nothing more to say
            pass
    atexit._run_exitfuncs()
    os._exit(int(code))


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version`` on a stage's parser (``oodml.<stage> 0.1.0``)."""
    parser.add_argument("--version", action="version", version=f"{parser.prog} (oodml {__version__})")


def add_extractor(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """The same ``--extractor NAME`` flag (frozen feature extractor) in every command; ``--features``
    is kept as an alias because earlier commands spelled it so. Parsed into ``args.extractor``."""
    parser.add_argument(
        "--extractor",
        "--features",
        dest="extractor",
        metavar="NAME",
        default=None,
        help=help or "frozen feature extractor (default: the dataset's default; see `oodml features --list`)",
    )


def add_device(parser: argparse.ArgumentParser, default: str | None = "auto", help: str | None = None) -> None:
    """The same ``--device`` flag in every command (see :func:`oodml.device.resolve_device`)."""
    parser.add_argument("--device", default=default, help=help or f"{DEVICE_HELP} (default: {default})")
