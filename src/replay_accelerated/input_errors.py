"""The errors of input files, the file system and devices, as one-paragraph user errors.

Readers and writers give specific messages where they can say more (data/formats.py names the
column, the split names its setting). What they do not catch reaches the command line as one of
the classes below, which are never programming mistakes: a file that cannot be read or written, a
full disk, bytes that are not text, a file that is not the format its name says. `cli.py` turns
them into an error that names the path and what to do, exit status 2. Anything else (a TypeError, a
KeyError: a defect of ours) keeps its traceback, which is the useful report.
"""

import errno

from replay_accelerated.errors import UserError

# OSError numbers -> what to do about them
OS_ADVICE = {
    errno.ENOSPC: "free space on that disk, or point the paths.* setting that names it to another disk",
    errno.EDQUOT: "free space within your quota, or point the paths.* setting that names it to another disk",
    errno.EACCES: "give yourself access to it, or point the setting that names it elsewhere",
    errno.EPERM: "give yourself access to it, or point the setting that names it elsewhere",
    errno.EROFS: "the file system is read-only: point the setting that names it to a writable folder",
    errno.ENOENT: "check the path in the setting that names it",
    errno.EISDIR: "it is a folder: name a file inside it",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
}


def as_user_error(error: BaseException) -> UserError | None:
    """The user error that `error` stands for, or None when it is not an input, file-system or device error."""
    if isinstance(error, OSError) and error.errno in OS_ADVICE:
        where = f" {error.filename}" if error.filename else ""
        return UserError(f"{error.strerror or error}:{where}; {OS_ADVICE[error.errno]}. Files of earlier runs "
                         "were left as they were (outputs are written under temporary names and renamed when complete)")
    if isinstance(error, UnicodeDecodeError):
        return UserError(f"a text file is not in the expected encoding ({error.reason} at byte {error.start}: "
                         f"{error.object[error.start:error.start + 4]!r}); save it as UTF-8, or set dataset.encoding "
                         "to its encoding (e.g. latin-1)")
    import pandas as pd  # here: the command line loads no data library before it needs one
    import pyarrow

    if isinstance(error, (pd.errors.ParserError, pd.errors.EmptyDataError)):
        return UserError(f"a text file cannot be parsed as a table ({error}); check dataset.separator and that every "
                         "row has the header's number of fields")
    if isinstance(error, pyarrow.ArrowException):
        return UserError(f"a parquet or Arrow file cannot be read ({error}); it may be truncated or not parquet at "
                         "all: write it again")
    return None

