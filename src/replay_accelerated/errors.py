"""User-facing errors.

Every mistake a user can make (a bad config value, a missing column, an unreachable
download) raises one of these with a message that names the problem and the fix.
The command line prints the message without a traceback and exits with status 2.
"""


class UserError(Exception):
    """A problem the user can fix; the message says how."""


class ConfigError(UserError):
    """The composed configuration is invalid (unknown key, wrong type, missing value)."""


class DataError(UserError):
    """The input data cannot be read or does not fit the protocol."""


class DownloadError(DataError):
    """A dataset could not be downloaded or failed its checksum."""


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite."""
