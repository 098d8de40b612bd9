"""What the page says when something given to it is wrong: one rule for every handler."""

from __future__ import annotations

from ..errors import L2CError

# What a handler turns into a message beside the control that caused it: the package's own errors, and what a
# value sent through the API (a path too long, text for a number, a list of the wrong kind) or the file
# system (no permission, a full disk) raises on the way. Anything else is a bug, and is left to show as one.
PROBLEMS = (L2CError, OSError, TypeError, ValueError)


def plain(exc: BaseException) -> str:
    """A problem in plain words: the package's message as it is, a file system's with its file, and a value
    that was not understood said so (Python's own wording of those is for programmers)."""
    if isinstance(exc, L2CError):
        return str(exc)
    if isinstance(exc, OSError):
        where = f" ({str(exc.filename)[:200]})" if exc.filename else ""
        return f"The file system refused: {exc.strerror or type(exc).__name__}{where}."
    return "A value given was not understood (a number, a list of images or a folder of the wrong kind)."
