"""Every command the documentation shows composes and validates as its mode would (`validate_only=true`).

The shell blocks of README.md and docs/**/*.md are read; each line that runs `python main.py` or
`replay-accelerated` (after any `&&`, comments dropped, continued lines joined) runs in this process with
`validate_only=true` appended. A documented command that cannot even compose fails here. Files a command
names that an earlier documented command would have written (a checkpoint for `init_from`) are made empty
in the test's folder first.
"""

import re
import shlex
from pathlib import Path

import pytest

from conftest import ROOT

DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
ENTRY = re.compile(r"^(python3? main\.py|replay-accelerated)(\s|$)")
ENVIRONMENT = re.compile(r"^([A-Z_][A-Z0-9_]*=\S*\s+)+")  # variables set for the command alone


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, arguments after the entry point) of every documented command."""
    commands = []
    for document in DOCUMENTS:
        text = document.read_text()
        for block in re.findall(r"^```(?:bash|sh|shell|console)\n(.*?)^```", text, flags=re.M | re.S):
            for line in block.replace("\\\n", " ").splitlines():
                command = ENVIRONMENT.sub("", line.split("&&")[-1].strip())  # `HOME=/tmp/x replay-accelerated ...`
                if ENTRY.match(command):
                    words = shlex.split(command, comments=True)
                    words = words[2:] if words[0].startswith("python") else words[1:]
                    commands.append((f"{document.relative_to(ROOT)}: {command[:80]}", _flags_first(words)))
    return commands


def _flags_first(words: list[str]) -> list[str]:
    """Hydra's flags (`--config-name NAME`) moved before the overrides, where they may also stand."""
    flags, overrides, index = [], [], 0
    while index < len(words):
        if words[index].startswith("--"):
            flags += words[index:index + 2]
            index += 2
        else:
            overrides.append(words[index])
            index += 1
    return flags + overrides


COMMANDS = documented_commands()


def test_the_documentation_has_commands_to_check():
    assert len(COMMANDS) >= 20


@pytest.mark.parametrize("arguments", [words for _, words in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_a_documented_command_composes_and_validates(arguments: list[str], home: Path, main_in_process):
    for argument in arguments:  # checkpoints that an earlier documented command writes
        key, _, value = argument.partition("=")
        if key.endswith("init_from") and value:
            (home / value).parent.mkdir(parents=True, exist_ok=True)
            (home / value).touch()
    result = main_in_process(*arguments, "validate_only=true")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "The command is valid" in result.stdout
