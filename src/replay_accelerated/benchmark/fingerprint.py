"""Which code produced a bench row: a hash of the repository's src/, configs/ and pyproject.toml.

Rows of one results table are only comparable when they come from the same code on the same
hardware; a git commit alone misses uncommitted edits, so the hash is of the files' contents.
The repository is found from the installed package (an editable install points into it).
"""

import hashlib
import subprocess
from pathlib import Path

import replay_accelerated

HASHED = ("src", "configs", "pyproject.toml")


def repository_root() -> Path:
    """The checkout holding the package (src/replay_accelerated), else the package folder itself."""
    package = Path(replay_accelerated.__file__).resolve().parent
    root = package.parents[1]
    return root if (root / "pyproject.toml").is_file() else package


def code_fingerprint(root: Path | None = None) -> str:
    """First 16 hex digits of a SHA-256 over the relative path and bytes of every hashed file."""
    root = root or repository_root()
    paths = [root] if (root / "__init__.py").is_file() else [root / name for name in HASHED]
    files = sorted(file for path in paths if path.exists()
                   for file in ([path] if path.is_file() else path.rglob("*"))
                   if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.relative_to(root).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def git_commit(root: Path | None = None) -> str | None:
    """The checked-out commit, for reference (None outside a git checkout)."""
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root or repository_root(),
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None
