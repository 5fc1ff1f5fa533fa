"""Compatibility entry point of the reference project: `python main.py` runs configs/config.yaml."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # works before `pip install -e .`

from replay_accelerated.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
