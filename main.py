"""Compatibility entry point of the reference project: `python main.py` runs the package's configs/config.yaml
(src/replay_accelerated/configs/), as `replay-accelerated` does."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # works before `pip install -e .`

from replay_accelerated.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
