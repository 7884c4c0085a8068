"""The split figure drawn by a helper process that imports matplotlib while the search runs.

``python -m oodml.make_splits`` spends about 0.7 s of CPU importing matplotlib and 0.5 s drawing the
figure. A background *thread* does not hide the import: importing is Python code that holds the
GIL, so it slowed the main thread's reading and search by about as much as it saved (measured on
the 2-core machine, CUB-sized table: the figure still added 1.25 s to the command). A child
process imports on the other core:

* :meth:`FigureWorker.start` launches ``python -m oodml.splits.figure_worker``, which imports
  matplotlib and the figure code, then waits for one line on its standard input;
* :meth:`FigureWorker.request` sends ``{"splits": <written split file>, "stem": <figure stem>}``
  as that line as soon as the file is written, :meth:`FigureWorker.wait` waits for it; the child
  loads the split file and calls :func:`~oodml.splits.figure.plot_split_series`, the function the
  parent would call, so the files are byte-identical to an in-process drawing (tested);
* :meth:`FigureWorker.close` stops a child that has nothing to draw (the parent failed first); an
  empty line, or the parent's exit closing the pipe, ends it too.

A child that fails reports its last error line; the parent raises it as an
:class:`~oodml.errors.OodmlError`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "oodml.splits.figure_worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        return self

    def request(self, split_file: str | Path, stem: str | Path) -> None:
        """Ask for ``<stem>.png`` and ``<stem>.pdf`` of the written ``split_file`` (returns at once)."""
        if self.proc is None or self.proc.stdin is None:
            raise OodmlError("the figure process was not started")
        self.stem = str(stem)
        try:
            self.proc.stdin.write(json.dumps({"splits": str(split_file), "stem": self.stem}) + "\n")
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
    """The child: import the drawing code, then draw what the first line of ``stdin`` asks."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.figure  # noqa: F401 - the import is the point: it runs while the parent searches
    from matplotlib.backends import backend_agg, backend_pdf  # noqa: F401

    from oodml.splits.figure import plot_split_series

    line = stdin.readline()
    if not line.strip():
        return 0
    request = json.loads(line)
    plot_split_series(request["splits"], request["stem"])
    return 0


if __name__ == "__main__":  # pragma: no cover - run by FigureWorker in a child process
    try:
        sys.exit(serve())
    except Exception as exc:  # noqa: BLE001 - one line for the parent, which raises it
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
