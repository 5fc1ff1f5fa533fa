"""Command line: `replay-accelerated [mode] [overrides...]` and `python main.py [overrides...]`.

Both run the package's `configs/config.yaml` (config.CONFIG_DIR) through Hydra, so presets
(`--config-name <preset>`, with `--config-dir` for a folder of one's own) and overrides
(`model=sasrec_movielens_20m dataset.preprocess.min_rating=0`) work the same. An argument naming a
file of `configs/mode/` or `configs/experiment/` is a shortcut: `replay-accelerated bench` is
`replay-accelerated mode=bench`, and `replay-accelerated bench_quick` is `replay-accelerated
experiment=bench_quick`. Mistakes the user can fix (config, data) print one
paragraph and exit with status 2, without a traceback; so do the errors of input files, the file
system and devices (`input_errors.py`). A run stopped by SIGTERM (SLURM, Kubernetes, `timeout`) stops
as Ctrl+C does, keeping its end-of-epoch checkpoints, and exits with status 143, as a shell reports it.
"""

import signal
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from replay_accelerated import modes
from replay_accelerated.config import CONFIG_DIR, ConfigOrigin
from replay_accelerated.errors import ConfigError, UserError
from replay_accelerated.input_errors import as_user_error
from replay_accelerated.validation import command_line_key_problem, validate

SIGTERM_EXIT = 128 + signal.SIGTERM  # 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl+C's KeyboardInterrupt: Lightning then stops training gracefully (and stops a
    DDP run's other processes) and exits, leaving the last end-of-epoch checkpoint to resume from."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def run(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    origin = ConfigOrigin(
        search_dirs=[_relative(Path(source.path)) for source in hydra_cfg.runtime.config_sources
                     if source.schema == "file"],
        config_name=hydra_cfg.job.config_name,
        group_choices=dict(hydra_cfg.runtime.choices),
        overrides=list(hydra_cfg.overrides.task),
    )
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cfg = validate(cfg, origin)
        if cfg.validate_only:
            print(f"The command is valid (mode={cfg.mode.name}); validate_only=true: nothing was run")
            return
        modes.run(cfg, origin)  # imports the mode's module only now that the config is valid
    except UserError as error:
        _stop(error)
    except (Terminated, SystemExit) as stop:
        # Inside training Lightning turns the interruption into sys.exit(1); the exception it handled says why.
        if isinstance(stop, Terminated) or isinstance(stop.__context__, Terminated):
            print("error: stopped by SIGTERM; no results were written, and the checkpoints of finished epochs are "
                  "kept: run the same command again to resume", file=sys.stderr)
            sys.exit(SIGTERM_EXIT)
        raise
    except Exception as error:
        user_error = as_user_error(error)
        if user_error is None:  # a programming error: its traceback is the useful report
            raise
        _stop(user_error)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stop(error: UserError) -> None:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)


def _relative(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> None:
    # A bare name is never a valid override, so a file name of mode/ can only mean `mode=<name>`, and one of
    # experiment/ `experiment=<name>` (a mode wins a name both have).
    group_of = {path.stem: group for group in ("experiment", "mode") for path in (CONFIG_DIR / group).glob("*.yaml")}
    sys.argv[1:] = [f"{group_of[arg]}={arg}" if arg in group_of else arg for arg in sys.argv[1:]]
    for arg in sys.argv[1:]:
        key, _, name = arg.partition("=")
        if key == "mode" and group_of.get(name) == "experiment":  # the bench presets were modes once
            _stop(ConfigError(f"'{name}' is an experiment (configs/experiment/{name}.yaml), not a mode: "
                              f"write experiment={name} (or just {name}) instead of mode={name}"))
        problem = command_line_key_problem(arg)
        if problem is not None:
            _stop(ConfigError(problem))
    run()
