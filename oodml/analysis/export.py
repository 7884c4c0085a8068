"""Writing tables: CSV, GitHub Markdown and LaTeX (booktabs), atomically and byte-stable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from oodml.io import PathLike, atomic_write


def _cell(v: Any, fmt: str) -> str:
    if v is None or v is pd.NA:
        return ""
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return ""
        return format(float(v), fmt)
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)).lower()
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return str(v)


def _is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype)


def to_markdown(df: pd.DataFrame, float_format: str = ".4g") -> str:
    """A GitHub-flavoured Markdown table (numbers right-aligned, floats with ``float_format``)."""
    header = [str(c).replace("|", "\\|") for c in df.columns]
    align = ["---:" if _is_numeric(df[c]) else ":---" for c in df.columns]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(v, float_format).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(text))


def to_latex(df: pd.DataFrame, float_format: str = ".4g", caption: str | None = None) -> str:
    """A booktabs ``tabular`` (needs ``\\usepackage{booktabs}``), text escaped, numbers right-aligned;
    the caption, when given, as a leading comment (wrap it in a ``table`` float yourself)."""
    spec = "".join("r" if _is_numeric(df[c]) else "l" for c in df.columns)
    lines = []
    if caption:
        lines.append("% " + caption.replace("\n", " "))
    lines += [
        f"\\begin{{tabular}}{{{spec}}}",
        "\\toprule",
        " & ".join(latex_escape(c) for c in df.columns) + " \\\\",
        "\\midrule",
    ]
    for row in df.itertuples(index=False):
        lines.append(" & ".join(latex_escape(_cell(v, float_format)) for v in row) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def to_csv(df: pd.DataFrame) -> str:
    """CSV text (full float precision, ``\\n`` line ends, empty cells for missing values)."""
    return df.to_csv(index=False, lineterminator="\n")


def write_table(df: pd.DataFrame, stem: PathLike, caption: str | None = None) -> list[Path]:
    """Write ``df`` atomically as ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex``; return the paths."""
    stem = Path(stem)
    paths = []
    for ext, text in (("csv", to_csv(df)), ("md", to_markdown(df)), ("tex", to_latex(df, caption=caption))):
        path = stem.with_name(f"{stem.name}.{ext}")
        atomic_write(path, text)
        paths.append(path)
    return paths
