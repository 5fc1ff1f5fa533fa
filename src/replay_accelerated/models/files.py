"""Model files: what every checkpoint of ours carries, and the one way any model file is read.

Every checkpoint or model file is read by `load_checkpoint` and nothing else: `torch.load` with
`weights_only=True`, which builds tensors and plain data (numbers, strings, lists, dicts) and
refuses any other object. A `.ckpt` is a pickle, and a pickle can carry code that runs the
moment it is loaded; a file that needs more than plain data stops the run with
`UntrustedCheckpoint`, unless the user sets `trust_checkpoint=true` for a file they trust.
Our own checkpoints hold only plain data, so they never need it.
"""

import pickle
import re

import torch

from replay_accelerated.errors import UserError

STAMP_KEY = "replay_accelerated"  # in every checkpoint: {"fingerprint", "model", "n_items", "architecture"}


class UntrustedCheckpoint(UserError):
    """A checkpoint holds objects other than tensors and plain data, and the user has not trusted it."""


def load_checkpoint(path, trust: bool = False, map_location="cpu") -> dict:
    """The contents of the checkpoint or model file at `path`: tensors and plain data only, unless `trust`.

    With `trust` (the config's `trust_checkpoint=true`), the file is unpickled in full, which runs
    any code it carries: only for files whose origin the user trusts. Classes registered with
    `torch.serialization.add_safe_globals` (RePlay's tensor schema, see models/replay_import.py)
    load without trust.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=not trust)
    except pickle.UnpicklingError as error:
        if trust or "Weights only load failed" not in str(error):
            raise
        found = re.search(r"GLOBAL (\S+)", str(error))
        detail = f"the global {found.group(1)}" if found else "an object that is not a tensor or plain data"
        raise UntrustedCheckpoint(
            f"{path} contains code-bearing objects ({detail}), and loading it could run code from it, so it was not "
            "loaded. A checkpoint written by this project holds only tensors and plain data; if this file comes from "
            "a source you trust, set trust_checkpoint=true to load it as a full pickle (never for files from "
            "unknown sources)"
        ) from None
