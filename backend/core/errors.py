"""Errors that are the user's to fix: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """A mistake in the input (bad path, wrong band count, corrupt checkpoint, ...).

    The message must say what is wrong and how to fix it, in one line. The CLI prints it
    without a traceback and exits with code 2.
    """

    exit_code = 2


class Cancelled(Exception):
    """The run was stopped by SIGINT/SIGTERM; outputs already cleaned up."""

    exit_code = 130
