"""Scoring memory against the number of users: streaming users keeps it at the output's size.

    python -m replay_accelerated.benchmarks.scoring_memory       # 100,000 and 1,000,000 users, both functions
    python -m replay_accelerated.benchmarks.scoring_memory "users=[10000]" "what=[recommend]"

For each user count and each function, a fresh process (so that no earlier peak hides this one) builds a
tiny random SASRec (hidden 32, 2 blocks, max_seq_len 50, 1,000 items; its size is printed), gives every
user a random history of 1 to 40 items (the model reads 50 positions, left-padded) and one ground-truth
item, and runs one of:

- `recommend`: evaluation/offline.recommend, the top 10 unseen items per user (validation, test and
  `mode=infer`), 256 users a batch, the default item chunks;
- `embeddings`: evaluation/offline.user_vectors, the [users x 32] vectors `mode=embeddings` writes.

It records the process's peak RSS (resource.getrusage(RUSAGE_SELF).ru_maxrss) after scoring, the RSS just
before scoring (inputs, model and libraries; `peak_before` shows that building them left no higher peak),
the bytes of the inputs (histories and ground truth) and of the output, and the seconds.

Pass bar (issue item 6): peak RSS at the largest user count <= (peak RSS at the smallest + the largest
count's output + the growth of the inputs themselves) x 1.1. Before streaming, every user's history was
padded up front ([users x max_seq_len] int64: 400 MB at 10^6 users here, 1.6 GB at length 200) and the
results were copied several times.

One torch thread by default (`threads`): on a busy 2-core machine more threads spin against the other
processes (7x slower there), and memory does not depend on it. Width 50 keeps 10^6 users under 10 minutes
on one core; the padding that streaming saves grows with the width.
"""

import json
import resource
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import OmegaConf

from replay_accelerated.benchmarks.settings import parse_settings, setting
from replay_accelerated.config import ModelParams
from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences, csr_offsets
from replay_accelerated.evaluation.offline import recommend, user_vectors
from replay_accelerated.models import build_model

ITEMS, WIDTH, HIDDEN, K, MAX_HISTORY = 1_000, 50, 32, 10, 40


def rss_mb() -> float:
    """The resident set size now (Linux /proc/self/status VmRSS)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) / 1024


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def measure(what: str, n_users: int, threads: int) -> dict:
    """Score `n_users` synthetic users with `what` in this process; the memory and time it took."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = build_model("sasrec", ITEMS, OmegaConf.structured(
        ModelParams(hidden_size=HIDDEN, max_seq_len=WIDTH, head_count=2, block_count=2))).eval()
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, MAX_HISTORY + 1, n_users)
    user_ids = np.arange(n_users, dtype=np.int64)
    history = UserSequences(user_ids, csr_offsets(lengths), rng.integers(0, ITEMS, int(lengths.sum())))
    truth = UserSequences(user_ids, csr_offsets(np.ones(n_users, np.int64)), rng.integers(0, ITEMS, n_users))
    inputs = sum(array.nbytes for sequences in (history, truth)
                 for array in (sequences.user_ids, sequences.offsets, sequences.items))
    peak_before, before = peak_rss_mb(), rss_mb()
    started = time.perf_counter()
    if what == "recommend":
        output = recommend(model.next_item_scores, EvaluationUsers(history, truth), ItemVocabulary(np.arange(ITEMS)),
                           K, WIDTH)
        output_bytes = int(output.memory_usage(deep=True, index=False).sum())
    else:
        output_bytes = user_vectors(model, history).nbytes
    return {"what": what, "users": n_users, "seconds": round(time.perf_counter() - started, 1),
            "inputs_mb": round(inputs / 2**20, 1), "output_mb": round(output_bytes / 2**20, 1),
            "rss_before_mb": round(before, 1), "peak_before_mb": round(peak_before, 1),
            "peak_rss_mb": round(peak_rss_mb(), 1),
            "model_parameters": sum(parameter.numel() for parameter in model.parameters())}


@dataclass
class ScoringMemorySettings:
    users: list[int] = setting([100_000, 1_000_000], "user counts")
    what: list[str] = setting(["recommend", "embeddings"], "functions to measure", choices=("recommend", "embeddings"))
    threads: int = setting(1, "torch threads")
    one: list[str] = setting([], "internal: [what, users], one measurement printed as JSON (a child process)")


def main() -> None:
    settings = parse_settings(ScoringMemorySettings, __doc__.splitlines()[0])
    if settings.one:
        print(json.dumps(measure(settings.one[0], int(settings.one[1]), settings.threads)))
        return
    print(f"torch {torch.__version__}, {settings.threads} thread(s)")
    for what in settings.what:
        rows = []
        for n_users in sorted(settings.users):
            done = subprocess.run([sys.executable, "-m", "replay_accelerated.benchmarks.scoring_memory",
                                   f"one=[{what},{n_users}]", f"threads={settings.threads}"],
                                  capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
        smallest, largest = rows[0], rows[-1]
        limit = 1.1 * (smallest["peak_rss_mb"] + largest["output_mb"] + largest["inputs_mb"] - smallest["inputs_mb"])
        verdict = "pass" if largest["peak_rss_mb"] <= limit else "FAIL"
        print(f"{what}: peak RSS {largest['peak_rss_mb']:,.0f} MB at {largest['users']:,} users; bar {limit:,.0f} MB "
              f"= 1.1 x ({smallest['peak_rss_mb']:,.0f} MB at {smallest['users']:,} users + output "
              f"{largest['output_mb']:,.0f} MB + inputs' growth "
              f"{largest['inputs_mb'] - smallest['inputs_mb']:,.0f} MB): {verdict}", flush=True)


if __name__ == "__main__":
    main()
