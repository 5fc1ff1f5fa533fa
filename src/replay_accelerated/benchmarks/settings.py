"""The measurement scripts' settings, given as the main command takes its config: `key=value` overrides.

    python -m replay_accelerated.benchmarks.head items=100000 "rows=[614,4096]" out=docs/benchmarks/x
    python -m replay_accelerated.benchmarks.head --help      # every setting with its default

Each script declares its settings as a dataclass whose fields carry their help (and, where a value must be one of a
few names, their choices) in `metadata`. `parse_settings` merges the command line into it with OmegaConf, which
checks the names and the types, so a misspelled key or a wrong value stops the script with exit status 2 and a
message that names the problem and the fix, as a wrong key does for `replay-accelerated`.
"""

import dataclasses
import sys
from typing import TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException

Settings = TypeVar("Settings")


def setting(default, help: str, choices: tuple[str, ...] = ()):  # noqa: A002 (argparse's name for it)
    """A dataclass field with its help text and, optionally, the names its value (or each of its values) must be."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, "choices": choices})
    return dataclasses.field(default=default, metadata={"help": help, "choices": choices})


def usage(settings_class: type, description: str) -> str:
    fields = dataclasses.fields(settings_class)
    width = max(len(field.name) for field in fields)
    lines = [description, "", f"usage: python -m {_script()} [key=value ...]", ""]
    for field in fields:
        default = _default(field)
        choices = f" (one of {', '.join(field.metadata['choices'])})" if field.metadata.get("choices") else ""
        lines.append(f"  {field.name:<{width}}  {field.metadata.get('help', '')}{choices}; default: {default}")
    return "\n".join(lines)


def parse_settings(settings_class: type[Settings], description: str, argv: list[str] | None = None) -> Settings:
    """The settings of `settings_class` with the command line's `key=value` overrides (sys.argv by default)."""
    arguments = sys.argv[1:] if argv is None else list(argv)
    if any(argument in ("-h", "--help") for argument in arguments):
        print(usage(settings_class, description))
        raise SystemExit(0)
    fields = {field.name: field for field in dataclasses.fields(settings_class)}
    for argument in arguments:
        if "=" not in argument or argument.startswith("-"):
            _fail(f"'{argument}' is not a key=value override; the settings are {list(fields)}, "
                  f"e.g. {next(iter(fields))}=...")
    try:
        settings = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(settings_class),
                                                       OmegaConf.from_dotlist(arguments)))
    except OmegaConfBaseException as error:
        key = str(getattr(error, "full_key", None) or "?")
        field = fields.get(key.split("[")[0].split(".")[0])  # `rows[1]`: an element of the setting `rows`
        if field is None:
            _fail(f"no setting '{key}'; the settings are {list(fields)} (--help lists them with their defaults)")
        if isinstance(error, MissingMandatoryValue):
            _fail(f"setting '{field.name}' is required: add {field.name}=... ({field.metadata['help']})")
        default = _default(field)
        hint = f"; a list is written in brackets, e.g. {field.name}={str(default).replace(' ', '')}" \
            if isinstance(default, list) else ""
        problem = str(error).splitlines()[0].rstrip(".")
        _fail(f"setting '{field.name}': {problem}{hint}")
    for field in fields.values():
        choices = field.metadata.get("choices")
        value = getattr(settings, field.name)
        wrong = [item for item in (value if isinstance(value, list) else [value]) if choices and item not in choices]
        if wrong:
            _fail(f"setting '{field.name}': {wrong[0]!r} is not one of {list(choices)}")
    return settings


def _default(field: dataclasses.Field):
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _script() -> str:
    main = sys.modules.get("__main__")
    return getattr(getattr(main, "__spec__", None), "name", None) or "replay_accelerated.benchmarks.<script>"


def _fail(problem: str) -> None:
    print(f"error: {problem}", file=sys.stderr)
    raise SystemExit(2)
