"""The bag errors, apart so that every module of the package can raise them without cycles.

A bag that cannot be used becomes one `BagError` whose message names the path, the
problem and what to do; `_one_line` keeps the underlying error text readable in it.
"""

from __future__ import annotations


class BagError(Exception):
    """A bag that cannot be used, with one message: path, problem, what to do."""


class TopicMapError(BagError, ValueError):
    """A malformed topic mapping (bad key or 'key=topic' string)."""


def _one_line(exc: BaseException) -> str:
    """An exception's text on one line (YAML and SQLite errors span several)."""
    return ' '.join(str(exc).split())


def _os_error(path: object, exc: OSError) -> str:
    """One line for an OS error met reading a bag: the path, the file and the problem."""
    what = exc.strerror or _one_line(exc) or type(exc).__name__
    where = f' {exc.filename}' if exc.filename and str(exc.filename) != str(path) else ''
    return (f'{path}: cannot read{where} ({what}). Check that the bag is a readable folder '
            'or file (permissions, a broken link, the disk).')
