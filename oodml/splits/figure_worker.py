"""The split figure drawn by a helper process that imports matplotlib while the search runs.

``python -m oodml.make_splits`` spends about 0.7 s of CPU importing matplotlib and 0.5 s drawing the
figure. A background *thread* does not hide the import: importing is Python code that holds the
GIL, so it slowed the main thread's reading and search by about as much as it saved (measured on
the 2-core machine, CUB-sized table: the figure still added 1.25 s to the command). A child
process imports on the other core:

* :meth:`FigureWorker.start` launches ``python -m oodml.splits.figure_worker``, which imports
  matplotlib and the figure code, then waits for one line on its standard input;
* :meth:`FigureWorker.request_view` sends ``{"view": <figure_view>, "stem": <figure stem>}`` as that
  line as soon as the series is selected: the child renders the PNG and the PDF in memory while the
  parent draws the episodes and writes the split file, with the same
  :func:`~oodml.splits.figure.render_split_series` the parent would call, so the files are
  byte-identical to an in-process drawing (tested);
* :meth:`FigureWorker.commit`, once the split file is written, sends ``commit``: only then does the
  child write ``<stem>.png`` and ``<stem>.pdf``, so a command that fails after its series was
  selected leaves no figure of a split file it did not write; :meth:`FigureWorker.wait` waits for
  them.  (:meth:`FigureWorker.request` asks for the figure of a written split file instead.)
* :meth:`FigureWorker.close` stops a child that has nothing to draw (the parent failed first); an
  empty line, or the parent's exit closing the pipe, ends it too.

A child that fails reports its last error line; the parent raises it as an
:class:`~oodml.errors.OodmlError`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from oodml import figure_process
from oodml.errors import OodmlError

__all__ = ["FigureWorker"]

#: Seconds the parent waits for the drawing once it asked for it.
DRAW_TIMEOUT = 300


class FigureWorker:
    """One child process that draws one split figure (see the module docstring)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None
        self.stem = ""

    def start(self) -> FigureWorker:
        """Adopt the process :func:`oodml.figure_process.start_early` started, or start one."""
        self.proc = figure_process.take_early() or figure_process.spawn()
        return self

    def request(self, split_file: str | Path, stem: str | Path) -> None:
        """Ask for ``<stem>.png`` and ``<stem>.pdf`` of the written ``split_file`` (returns at once)."""
        self._send({"splits": str(split_file), "stem": str(stem)})
        self.commit()

    def request_view(self, view: dict, stem: str | Path) -> None:
        """Render the figure of ``view`` (:func:`~oodml.splits.figure.figure_view`) now; it is
        written at :meth:`commit` (returns at once)."""
        self._send({"view": view, "stem": str(stem)})

    @property
    def requested(self) -> bool:
        """Whether a figure was asked for (by :meth:`request_view` or :meth:`request`)."""
        return bool(self.stem)

    def commit(self) -> None:
        """Let the child write the figure it is rendering (after :meth:`request_view`)."""
        if not self.requested:
            raise OodmlError("no figure was requested from the figure process")
        self._write("commit\n")

    def _send(self, request: dict) -> None:
        self.stem = str(request["stem"])
        self._write(json.dumps(request) + "\n")

    def _write(self, line: str) -> None:
        if self.proc is None or self.proc.stdin is None:
            raise OodmlError("the figure process was not started")
        try:
            self.proc.stdin.write(line)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the child ended early: wait() reports why

    def wait(self) -> None:
        """Wait for the figure asked for by :meth:`request`; raise if the child failed."""
        if self.proc is None:
            raise OodmlError("the figure process was not started")
        proc, self.proc = self.proc, None
        try:
            _, err = proc.communicate(timeout=DRAW_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise OodmlError(
                f"drawing the split figure {self.stem}.png took over {DRAW_TIMEOUT} s; stopped it"
            ) from None
        if proc.returncode != 0:
            lines = [s for s in (err or "").strip().splitlines() if s.strip()]
            why = lines[-1] if lines else f"exit status {proc.returncode}"
            raise OodmlError(f"drawing the split figure {self.stem}.png failed: {why}")

    def draw(self, split_file: str | Path, stem: str | Path) -> None:
        """:meth:`request` then :meth:`wait`."""
        self.request(split_file, stem)
        self.wait()

    def close(self) -> None:
        """Stop a child whose figure is not waited for (idempotent; after :meth:`wait`, nothing to do).
        Its files are written atomically, so a stopped child leaves no partial figure."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.communicate()


def serve(stdin=sys.stdin) -> int:
    """The child: import the drawing code, render what the first line of ``stdin`` asks, and write
    it when the next line is ``commit``."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.figure  # noqa: F401 - the import is the point: it runs while the parent searches
    from matplotlib.backends import backend_agg, backend_pdf  # noqa: F401

    from oodml.splits.figure import render_split_series, write_figure_files

    line = stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    png, pdf = render_split_series(request["view"] if "view" in request else request["splits"])
    if stdin.readline().strip() != "commit":
        return 0  # the parent did not write its split file: no figure of it
    write_figure_files(request["stem"], png, pdf)
    return 0


def _main() -> None:  # pragma: no cover - run by FigureWorker in a child process
    try:
        code = serve()
    except Exception as exc:  # noqa: BLE001 - one line for the parent, which raises it
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    # The parent waits for this process to end.  Its files are written and closed, so it skips the
    # interpreter's teardown of matplotlib's objects and modules (≈ 0.15 s of the command).
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    _main()
