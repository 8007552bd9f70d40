"""Errors a user can fix. The CLI prints them as one line and exits with code 2, no traceback."""


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


class DataNotFoundError(UserError):
    """A dataset's files are missing or truncated under the data root."""


class RunDiverged(RuntimeError):
    """The loss became NaN or infinite; the partial accuracy matrix is kept."""
