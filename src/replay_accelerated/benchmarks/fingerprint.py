"""Which code and machine produced a bench row, and whether rows may share a table.

Rows of one results table are only comparable when they come from the same code on the same hardware
running at the same speed. The code is a hash of the repository's src/ (the configs included) and pyproject.toml (a
git commit alone misses uncommitted edits, so the hash is of the files' contents; the repository is found
from the installed package, which an editable install points into). The speed is the bench's fp32 matmul
probe, recorded in every row: a shared or throttled VM of the same type can run 20% slower another day.
"""

import hashlib
import statistics
import subprocess
from pathlib import Path

import replay_accelerated
from replay_accelerated.errors import UserError

HASHED = ("src", "pyproject.toml")


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


SPEED_TOLERANCE = 0.10  # rows whose fp32 matmul probe differs more than this came from a machine at another speed


def speeds_differ(probe: float, other: float) -> bool:
    """Whether two fp32 matmul probes came from a machine running at different speeds."""
    return abs(probe / other - 1) > SPEED_TOLERANCE


def table_probe(rows: list[dict]) -> float | None:
    """The median fp32 matmul probe of a table's rows (None without fp32 rows). One probe on a shared VM
    varies by more than SPEED_TOLERANCE from minute to minute; the median of the table does not."""
    probes = [row["matmul_flops_per_second"] for row in rows if str(row.get("precision")) == "32-true"]
    return statistics.median(probes) if probes else None


def check_same_machine_speed(rows: list[dict], probe_fp32: float, allow_mixed: bool, csv_path: Path) -> None:
    """The same hardware is not always the same speed (a shared or throttled VM): a table whose rows were
    measured while the fp32 matmul probe ran (in their median) more than SPEED_TOLERANCE faster or slower
    than now is refused, unless allowed."""
    typical = table_probe(rows)
    if typical is not None and speeds_differ(typical, probe_fp32) and not allow_mixed:
        raise UserError(
            f"{csv_path} holds rows measured while this machine multiplied fp32 matrices at {typical / 1e9:.1f} "
            f"GFLOP/s (their median); it does {probe_fp32 / 1e9:.1f} now ({typical / probe_fp32 - 1:+.0%}), so their "
            "times would not compare with new ones. Finish the table when the machine runs at that speed again, use "
            "another mode.bench.name for a fresh table, or set mode.bench.allow_mixed=true to append anyway (the "
            "table is then marked)")


def check_same_code_and_hardware(rows: list[dict], fingerprint: str, machine: str, allow_mixed: bool,
                                 csv_path: Path) -> None:
    """Rows of one table must come from the same code and hardware, unless the user opts in."""
    other = [(row.get("code_fingerprint"), row.get("hardware")) for row in rows
             if (row.get("code_fingerprint"), row.get("hardware")) != (fingerprint, machine)]
    if other and not allow_mixed:
        theirs_code, theirs_machine = other[0]
        raise UserError(
            f"{csv_path} holds rows of code {theirs_code} on {theirs_machine}, and this run is code {fingerprint} on "
            f"{machine}; their times and metrics would not be comparable. Use another mode.bench.name (or delete "
            "the file) for a fresh table, or set mode.bench.allow_mixed=true to append anyway (the table is then "
            "marked \"mixed code versions/hardware\")")
