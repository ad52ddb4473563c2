"""The error type the command line turns into a one-line message and exit status 2."""

from __future__ import annotations


class CliError(Exception):
    """A user error (bad flag, unknown recipe key, missing data...): printed as ``PROG: error: MESSAGE``, exit 2."""

    def __init__(self, message: str, *, prog: str = "alicemind") -> None:
        super().__init__(message)
        self.prog = prog
