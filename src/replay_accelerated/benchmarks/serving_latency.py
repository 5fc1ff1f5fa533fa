"""Serving latency and throughput of an exported model: PyTorch eager, torch.export and onnxruntime.

    python -m replay_accelerated.benchmarks.serving_latency out=docs/benchmarks/cpu_serving

For each model (BERT4Rec, SASRec at the seed config: hidden 256, 2 blocks, 2 heads, max_seq_len 128) on
the MovieLens-20M-shaped catalog (18,345 items; random weights: speed does not depend on them), the top-k
function of `mode=export` (models/serving.py `TopKUnseen`, k = 100, its inputs the history and the seen
items) is exported once and timed three ways
on the same inputs: the PyTorch module (eager), the `torch.export` program, and the ONNX file in
onnxruntime (CPU provider). Two loads: one user at a time (history of 50 items; latency p50 and p99 over
`requests` calls after a warm-up) and batches of 256 users (throughput, users per second, median of
`batches` calls). Every backend's outputs are checked against eager (same top-k ids) before timing.
Writes serving.csv and serving.md (with the hardware and threads) to `out` (settings: `--help`).
"""

import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from replay_accelerated.benchmarks.render import write_measurements
from replay_accelerated.benchmarks.settings import parse_settings, setting
from replay_accelerated.benchmarks.timing import step_seconds
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.serving import TopKUnseen, write_function

MODELS = {"bert4rec": Bert4Rec, "sasrec": SasRec}
HISTORY = 50  # items in a served user's history


def measure(name: str, n_items: int, hidden: int, max_seq_len: int, k: int, requests: int, batches: int,
            batch_size: int) -> list[dict]:
    """One row per backend: latency of single-user calls and throughput of batches."""
    import onnxruntime

    torch.manual_seed(0)
    model = MODELS[name](n_items=n_items, max_seq_len=max_seq_len, hidden_size=hidden, block_count=2,
                         head_count=2, dropout_rate=0.1).eval()
    function = TopKUnseen(model, k).eval()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model_top_k"
        write_function(function, path, ["history", "seen"], ["scores", "item_ids"], opset=18)  # as mode=export
        program = torch.export.load(path.with_suffix(".pt2")).module()
        session = onnxruntime.InferenceSession(str(path.with_suffix(".onnx")), providers=["CPUExecutionProvider"])
    # The served user's seen set is their history here (a longer one only adds input to copy).
    backends = {
        "pytorch_eager": lambda history: function(history, history),
        "torch_export": lambda history: program(history, history),
        "onnxruntime": lambda history: session.run(None, {"history": history.numpy(), "seen": history.numpy()}),
    }
    width = min(HISTORY, max_seq_len)  # a served history holds at most max_seq_len items
    one = torch.randint(0, n_items, (1, width))
    many = torch.randint(0, n_items, (batch_size, width))
    with torch.no_grad():
        expected = function(many, many)[1].numpy()
        rows = []
        for backend, call in backends.items():
            got = call(many)[1]
            same = float(np.mean(np.asarray(got) == expected))  # share of identical top-k ids
            latencies = step_seconds(lambda: call(one), requests, warmup=5)
            throughput = step_seconds(lambda: call(many), batches, warmup=5)
            rows.append({
                "model": name, "backend": backend, "n_items": n_items, "hidden_size": hidden, "k": k,
                "history": width, "p50_ms": round(1000 * float(np.percentile(latencies, 50)), 2),
                "p99_ms": round(1000 * float(np.percentile(latencies, 99)), 2),
                f"users_per_second_batch_{batch_size}": round(batch_size / statistics.median(throughput), 1),
                "same_top_k_as_eager": round(same, 4),
            })
            print(rows[-1], flush=True)
    return rows


@dataclass
class ServingSettings:
    models: list[str] = setting(list(MODELS), "models to serve", choices=tuple(MODELS))
    items: int = setting(18_345, "catalog size (MovieLens-20M's by default)")
    hidden: int = setting(256, "hidden size")
    max_seq_len: int = setting(128, "history length the model reads")
    k: int = setting(100, "items recommended per user")
    requests: int = setting(300, "timed one-user calls")
    batches: int = setting(20, "timed batch calls")
    batch_size: int = setting(256, "users per batch call")
    out: Path = setting(Path("serving"), "folder for serving.csv and serving.md")


def main() -> None:
    settings = parse_settings(ServingSettings, __doc__.splitlines()[0])
    rows = [row for name in settings.models
            for row in measure(name, settings.items, settings.hidden, settings.max_seq_len, settings.k,
                               settings.requests, settings.batches, settings.batch_size)]
    write_measurements(rows, settings.out, "serving", f"Serving latency: top-{settings.k} of {settings.items:,} items",
                       torch.device("cpu"),
                       f"One user (history of {HISTORY} items): p50 and p99 over {settings.requests} calls after 5 "
                       f"warm-up calls; batches of {settings.batch_size}: median of {settings.batches} calls. Random "
                       f"weights of the seed config (hidden {settings.hidden}, 2 blocks, 2 heads, max_seq_len "
                       f"{settings.max_seq_len}).")


if __name__ == "__main__":
    main()
