"""The entry point's guard: errors of input files, the file system and devices become one paragraph naming the path
(exit status 2); programming errors keep their traceback."""

import errno
from pathlib import Path

import pandas as pd
import pyarrow
import pytest

from replay_accelerated.input_errors import as_user_error

FILE_SYSTEM = [(errno.ENOSPC, "No space left on device", "free space"), (errno.EACCES, "Permission denied", "access"),
               (errno.EROFS, "Read-only file system", "writable"), (errno.ENOENT, "No such file or directory", "path"),
               (errno.EISDIR, "Is a directory", "folder")]


@pytest.mark.parametrize("number, text, advice", FILE_SYSTEM)
def test_file_system_errors_name_the_path_and_what_to_do(number, text, advice):
    error = as_user_error(OSError(number, text, "/data/results/metrics.csv"))
    assert error is not None
    assert text in str(error) and "/data/results/metrics.csv" in str(error) and advice in str(error)


def test_decoding_parsing_and_arrow_errors_become_user_errors():
    decoding = as_user_error(UnicodeDecodeError("utf-8", b"caf\xe9", 3, 4, "invalid continuation byte"))
    assert "dataset.encoding" in str(decoding)
    assert "dataset.separator" in str(as_user_error(pd.errors.ParserError("Expected 4 fields in line 8, saw 5")))
    assert "truncated" in str(as_user_error(pyarrow.ArrowInvalid("Parquet magic bytes not found")))


@pytest.mark.parametrize("error", [TypeError("bad operand"), KeyError("column"), ValueError("shapes"),
                                   OSError(errno.EBADF, "Bad file descriptor")])
def test_programming_errors_keep_their_traceback(error):
    assert as_user_error(error) is None


def test_a_data_folder_that_cannot_be_written_stops_naming_it(tmp_path: Path, main_in_process, monkeypatch):
    import replay_accelerated.data.pipeline as pipeline

    def read_only(cache_dir, *args):
        raise PermissionError(errno.EACCES, "Permission denied", str(cache_dir))

    monkeypatch.setattr(pipeline, "_write_cache", read_only)
    result = main_in_process("model.params.training_params.max_epochs=1", "dataset.generator.n_users=300")
    assert result.returncode == 2
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: Permission denied") and str(tmp_path / "data") in message
