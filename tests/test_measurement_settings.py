"""The measurement scripts (`python -m replay_accelerated.benchmarks.<script>`) take `key=value` settings, as the main
command takes its config, and stop with exit status 2 and a message naming the problem and the fix."""

import importlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from replay_accelerated.benchmarks.settings import parse_settings, setting

SCRIPTS = ["evaluation_memory", "head", "loop", "scoring_memory", "serving_latency", "switchback_gradient"]


@dataclass
class Example:
    items: int = setting(100, "catalog size")
    rows: list[int] = setting([1, 2], "row counts")
    models: list[str] = setting(["sasrec"], "models", choices=("sasrec", "bert4rec"))
    data: Path = setting("???", "input file")
    out: Path = setting(Path("out"), "folder")


def test_overrides_are_merged_and_typed():
    settings = parse_settings(Example, "", ["items=7", "rows=[3,4,5]", "models=[bert4rec,sasrec]", "data=x.parquet"])
    assert settings == Example(items=7, rows=[3, 4, 5], models=["bert4rec", "sasrec"], data=Path("x.parquet"))
    assert parse_settings(Example, "", ["data=y"]).rows == [1, 2]  # defaults are fresh lists


@pytest.mark.parametrize("argv, message", [
    (["itemz=3", "data=x"], "no setting 'itemz'; the settings are ['items', 'rows', 'models', 'data', 'out']"),
    (["items=many", "data=x"], "setting 'items': Value 'many' of type 'str' could not be converted to Integer"),
    (["rows=[1,x]", "data=x"], "a list is written in brackets, e.g. rows=[1,2]"),
    (["--items", "3"], "'--items' is not a key=value override"),
    (["models=[gpt]", "data=x"], "setting 'models': 'gpt' is not one of ['sasrec', 'bert4rec']"),
    ([], "setting 'data' is required: add data=... (input file)"),
])
def test_a_wrong_setting_stops_with_status_2_and_names_the_fix(capsys, argv, message):
    with pytest.raises(SystemExit) as stopped:
        parse_settings(Example, "", argv)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_script_lists_its_settings(capsys, monkeypatch, script):
    module = importlib.import_module(f"replay_accelerated.benchmarks.{script}")
    monkeypatch.setattr("sys.argv", [script, "--help"])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 0
    listed = capsys.readouterr().out
    assert module.__doc__.splitlines()[0] in listed and "out" in listed or script == "scoring_memory"
    assert "default:" in listed
