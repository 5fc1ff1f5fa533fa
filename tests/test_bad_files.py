"""Bad input files and settings of `dataset=local`: each stops the run with one paragraph that names the file (or
setting) and what to do, exit status 2; the cases that can go on (empty ids, no ratings, a damaged cache) go on and
say what they did."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import compose
from replay_accelerated.data.formats import read_local_log
from replay_accelerated.data.pipeline import prepare_data
from replay_accelerated.errors import ConfigError, DataError


def _log(n_users: int = 40, per_user: int = 12, users_in_turn: bool = True) -> pd.DataFrame:
    """A log that the default protocol splits. users_in_turn: every user has events all along the log's time
    (one event each in turn); otherwise each user's events come in one block, users one after the other."""
    users = np.repeat(np.arange(n_users), per_user)
    steps = np.tile(np.arange(per_user), n_users)
    order = steps * n_users + users if users_in_turn else users * per_user + steps
    return pd.DataFrame({"user_id": users, "item_id": (users * 7 + steps) % 30, "rating": 5, "timestamp": order * 60})


def _csv(frame: pd.DataFrame, path: Path, **edits: str) -> Path:
    """`frame` as CSV at `path`, with text fields replaced: `edits` maps 'row:column' to the field's new text."""
    frame = frame.astype(object)
    for place, text in edits.items():
        row, column = place.split(":")
        frame.loc[int(row), column] = text
    frame.to_csv(path, index=False)
    return path


def _run(main_in_process, path: Path, *overrides: str):
    return main_in_process("dataset=local", f"dataset.path={path}", "model=bert4rec_local", *overrides)


def _stops_with(result, *words: str) -> str:
    """The run ended with exit status 2 and one paragraph, `error: ...`, holding every one of `words`."""
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and all(word in message for word in words), message
    return message


# name -> (makes the file in a folder and returns it, words the error must hold). Line numbers count the header.
BAD_FILES = {
    "infinite timestamp": (lambda folder: _csv(_log(), folder / "log.csv", **{"5:timestamp": "inf"}),
                           ["log.csv", "infinite", "'inf' on line 7", "fix or drop"]),
    "timestamp that is no time": (lambda folder: _csv(_log(), folder / "log.csv", **{"7:timestamp": "soon"}),
                                  ["log.csv", "neither numbers nor dates", "'soon' on line 9"]),
    "rating as text": (lambda folder: _csv(_log(), folder / "log.csv", **{"3:rating": "five"}),
                       ["log.csv", "not numbers", "'five' on line 5", "rating_column=null"]),
    "row with an extra field": (lambda folder: _with_lines(folder / "log.csv", {7: "3,9,5,480,extra"}),
                                ["log.csv", "line 8", "as many fields as the header", "dataset.separator"]),
    "first row with an extra field": (lambda folder: _with_lines(folder / "log.csv", {1: "0,0,5,0,extra"}),
                                      ["log.csv", "as many fields as the header", "dataset.separator"]),
    "latin-1 text": (lambda folder: _latin_1(folder / "log.csv"), ["log.csv", "utf-8", "dataset.encoding=latin-1"]),
    "random bytes as csv": (lambda folder: _write(folder / "log.csv", np.random.default_rng(0).bytes(4096)),
                            ["log.csv", "not a text file", "dataset.path"]),
    "empty parquet file": (lambda folder: _write(folder / "log.parquet", b""),
                           ["log.parquet", "not a readable parquet file", "dataset.path"]),
    "truncated parquet file": (lambda folder: _truncated_parquet(folder / "log.parquet"),
                               ["log.parquet", "not a readable parquet file", "truncated", "dataset.path"]),
    "semicolons": (lambda folder: _separated(folder / "log.csv", ";"), ["log.csv", "dataset.separator=';'"]),
    "bars": (lambda folder: _separated(folder / "log.csv", "|"), ["log.csv", "dataset.separator='|'"]),
    "tabs in a .csv": (lambda folder: _separated(folder / "log.csv", "\t"), ["log.csv", r"dataset.separator='\t'"]),
    "a folder": (lambda folder: _folder_of_logs(folder / "logs"),
                 ["dataset.path names the folder", "logs (it holds a.csv)", "a file is needed"]),
}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _with_lines(path: Path, lines: dict[int, str]) -> Path:
    """The good log, with its lines (0: the header) replaced."""
    text = _log().to_csv(index=False).splitlines()
    for number, line in lines.items():
        text[number] = line
    return _write(path, "\n".join(text).encode())


def _latin_1(path: Path) -> Path:
    frame = _log().assign(user_id=lambda log: "José " + log.user_id.astype(str))
    return _write(path, frame.to_csv(index=False).encode("latin-1"))


def _truncated_parquet(path: Path) -> Path:
    _log().to_parquet(path)
    return _write(path, path.read_bytes()[: path.stat().st_size // 2])


def _folder_of_logs(folder: Path) -> Path:
    folder.mkdir()
    _csv(_log(), folder / "a.csv")
    return folder


def _separated(path: Path, separator: str) -> Path:
    _log().to_csv(path, sep=separator, index=False)
    return path


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_names_itself_and_the_fix(home: Path, case: str, main_in_process):
    make, words = BAD_FILES[case]
    _stops_with(_run(main_in_process, make(home)), *words)


@pytest.mark.parametrize("denied", ["reader", "access check"])
def test_file_without_read_permission(home: Path, denied: str, main_in_process, monkeypatch):
    # Tests run as root, who may read anything: the reader (or the access check) is told to refuse.
    path = _csv(_log(), home / "log.csv")
    if denied == "reader":
        read_csv = pd.read_csv

        def refusing(source, *args, **kwargs):
            if Path(source) == path:
                raise PermissionError(13, "Permission denied", str(source))
            return read_csv(source, *args, **kwargs)

        monkeypatch.setattr(pd, "read_csv", refusing)
    else:
        monkeypatch.setattr("replay_accelerated.data.formats.os.access", lambda *args: False)
    _stops_with(_run(main_in_process, path), str(path), "permission denied", "chmod u+r", "dataset.path")


def test_split_without_test_users_says_which_setting_to_change_and_leaves_no_cache(home: Path, main_in_process):
    # Each user's events lie together in time, so the latest 10% of events are those of the last users only:
    # nobody has a history before the split time to be tested on.
    path = _csv(_log(per_user=10, users_in_turn=False), home / "log.csv")
    _stops_with(_run(main_in_process, path), "leaves no test users", "dataset.preprocess.global_split_ratio",
                "dataset.preprocess.protocol=leave_one_out")
    assert not [file for file in (home / "data").rglob("*") if file.is_file()]  # no half-written cache


def _prepared(home: Path, path: Path, *overrides: str):
    dataset = compose(home, "dataset=local", f"dataset.path={path}", *overrides).dataset
    return prepare_data(dataset, home / "data")


def test_log_without_ratings_is_not_filtered_by_rating(home: Path):
    path = _csv(_log().drop(columns="rating"), home / "log.csv")
    prepared = _prepared(home, path, "dataset.feature_schema.rating_column=null")  # min_rating stays 3
    assert len(prepared.train) > 30 and len(prepared.test) > 0
    assert prepared.summary()["rating_filter"].startswith("none: the log has no ratings")
    with_ratings = _prepared(home, _csv(_log(), home / "rated.csv"))
    assert with_ratings.summary()["rating_filter"] == "rating > 3.0"


def test_rows_with_empty_ids_are_counted_and_ids_keep_their_integer_type(home: Path, capsys):
    path = _csv(_log(), home / "log.csv", **{"3:user_id": "", "10:item_id": "", "11:item_id": ""})
    prepared = _prepared(home, path)
    assert "dropped 3 rows of" in capsys.readouterr().err
    assert prepared.vocabulary.item_ids.dtype == np.int64 and prepared.train.user_ids.dtype == np.int64
    assert pd.read_parquet(prepared.cache_dir / "items.parquet")["item_id"].dtype == np.int64


def test_truncated_cache_manifest_is_rebuilt_with_a_warning(home: Path, capsys):
    path = _csv(_log(), home / "log.csv")
    first = _prepared(home, path)
    manifest = first.cache_dir / "manifest.json"
    manifest.write_text(manifest.read_text()[:40])
    capsys.readouterr()
    again = _prepared(home, path)
    assert f"Cache manifest {manifest} is truncated or damaged; rebuilding" in capsys.readouterr().err
    assert np.array_equal(again.train.items, first.train.items)
    assert json.loads(manifest.read_text())["sha256"]  # whole again
    assert not list(first.cache_dir.parent.glob(".*.tmp"))  # the temporary build folder is gone


def test_latin_1_file_reads_with_its_encoding(home: Path):
    prepared = _prepared(home, _latin_1(home / "log.csv"), "dataset.encoding=latin-1")
    assert all(user.startswith("José ") for user in prepared.train.user_ids)


def test_unknown_encoding_and_inexact_ids_are_refused(tmp_path: Path):
    schema = compose(tmp_path, "dataset=local", "dataset.path=x").dataset.feature_schema
    path = _csv(_log(), tmp_path / "log.csv")
    with pytest.raises(ConfigError, match="dataset.encoding 'utf-9' is not an encoding"):
        read_local_log(path, schema, encoding="utf-9")
    # An id column with empty values is read as float64, which holds integers exactly only below 2**53.
    long_ids = _csv(_log().assign(user_id=lambda log: log.user_id + 2**60), tmp_path / "long.csv", **{"0:user_id": ""})
    with pytest.raises(DataError, match="'user_id' in long.csv are too long"):
        read_local_log(long_ids, schema)


@pytest.mark.parametrize("separator, override", [(";", "';'"), ("|", "'|'"), ("\t", r"'\t'")])
def test_the_suggested_separator_reads_the_file(tmp_path: Path, separator: str, override: str):
    dataset = compose(tmp_path, "dataset=local", "dataset.path=x", f"dataset.separator={override}").dataset
    frame = read_local_log(_separated(tmp_path / "log.csv", separator), dataset.feature_schema, dataset.separator)
    pd.testing.assert_frame_equal(frame, _log()[["user_id", "item_id", "rating", "timestamp"]], check_dtype=False)


def test_a_log_of_a_single_item_is_refused_before_training(tmp_path: Path, main_in_process):
    log = _log()
    log["item_id"] = 7  # every user has seen the only item: nothing would be left to recommend
    result = _run(main_in_process, _csv(log, tmp_path / "log.csv"))
    _stops_with(result, "1 distinct item", "at least 2", "dataset.feature_schema.item_column")
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").rglob("*.ckpt"))


@pytest.mark.slow
def test_no_bad_file_changes_a_file_of_the_earlier_run(home: Path, main_in_process):
    """A good run first, then every bad file of BAD_FILES into the same save name: each stops, and every file of the
    good run keeps its sha256."""
    import hashlib

    good = _csv(_log(n_users=120), home / "good.csv")
    assert _run(main_in_process, good, "model.params.training_params.max_epochs=1").returncode == 0
    outputs = [path for folder in ("checkpoints", "results") for path in (home / folder).rglob("*")
               if path.is_file() and path.name != ".lock"]
    before = {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in outputs}
    assert any(path.name == "best.ckpt" for path in before) and any(path.name == "run.json" for path in before)
    for number, (make, words) in enumerate(BAD_FILES.values()):
        folder = home / f"case_{number}"
        folder.mkdir()
        _stops_with(_run(main_in_process, make(folder)), *words)
    assert {path: hashlib.sha256(path.read_bytes()).hexdigest() for path in outputs} == before
