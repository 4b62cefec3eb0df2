"""The one error type readers raise, and how a low-level exception becomes part of a sentence."""

from __future__ import annotations


class ReadError(Exception):
    """A file or its pixels cannot be read; the message is one sentence a user can act on."""


def short_reason(exc: BaseException) -> str:
    """The first line of an exception's message (or its type), at most 120 characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else type(exc).__name__
    line = line.rstrip(".")
    return line if len(line) <= 120 else line[:117] + "..."


def is_interrupt(exc: BaseException) -> bool:
    """Exceptions that must go on up: the user pressed Ctrl+C, or the program is exiting.

    Everything else from a decoder counts as a failure to read, including exceptions that do not
    derive from Exception, such as the PanicException a Rust decoder (pylibjpeg-rle) raises on
    corrupt data.
    """
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit)
