"""Project exceptions.

:class:`OodmlError` is a problem the *user* can fix (a missing dataset, a bad file, a wrong
option).  Its message is one line that says what is wrong, which file, and what to do.  The
command-line entry points print it without a traceback and exit with status 2.  Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class OodmlError(Exception):
    """A user-fixable error: one clear line (what, which file, what to do)."""


class DatasetNotFoundError(OodmlError):
    """A dataset's files are not where we looked."""


class BadInputError(OodmlError):
    """An input file or folder is malformed (layout, table, image, split or study file)."""


class DownloadError(OodmlError):
    """A download failed, was truncated, or did not match its checksum."""


class WeightsNotFoundError(OodmlError):
    """Pretrained weights are needed but not on disk (and cannot be downloaded here)."""


class UnsafeFileError(OodmlError):
    """A file asked for something we refuse to do (code in a pickle, a path escaping an archive)."""
