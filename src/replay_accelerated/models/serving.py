"""A trained model as the functions a serving system calls (what `mode=export` writes to ONNX and torch.export).

Each takes the item-id histories [B, W] (int64, our token ids: items 0..n_items-1 in `items.parquet`
order, left-padded with `pad_id` = n_items, 1 <= W <= max_seq_len) and pads them on the left to
max_seq_len first. That is exact (padding never attends or is attended to, and positions count from
the right), and gives the traced graph one fixed width, so that one exported file serves every history
length.

- `NextItemScores`: history -> scores of every item [B, n_items];
- `CandidateScores`: (history, candidates [B, C] item ids) -> their scores [B, C];
- `TopKUnseen`: (history, seen [B, S] item ids) -> (scores [B, k], item ids [B, k]), the best k items the
  user has not seen, as `mode=infer` ranks them (`evaluation/ranking.top_k_unseen`): `seen` holds every item
  the user has seen, older than the history too (padded with `pad_id` anywhere; the history's own items are
  removed either way; left out, in PyTorch, only those), ties go to the larger item index (replay-rec's
  order: (score, item) descending), and a user with fewer than k unseen items gets item -1 (score -inf) in
  the places left.

`write_function` writes one of them as a `torch.export` program (.pt2) and as ONNX (.onnx).

A SwitchBack head is served as its float equivalent (`float_head_copy`): the int8 kernels are a training
and GPU speed-up, and exporters know nothing of `torch._int_mm` on every backend.
"""

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from replay_accelerated.models.heads import LinearHead, TiedHead
from replay_accelerated.models.top_k import top_k_replay_order
from replay_accelerated.models.transformer import SequentialRecommender


class _Serving(nn.Module):
    def __init__(self, model: SequentialRecommender):
        super().__init__()
        self.model = model

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """history [B, W] -> the hidden state that scores the next item [B, H]."""
        width = self.model.max_seq_len
        full = F.pad(history, (width - history.shape[1], 0), value=self.model.pad_id)  # [B, max_seq_len]
        return self.model.user_vectors(full)


class NextItemScores(_Serving):
    def forward(self, history: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.user_vectors(history))  # [B, n_items]


class CandidateScores(_Serving):
    def forward(self, history: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        return self.model.head(self.user_vectors(history), candidates)  # [B, C]


class TopKUnseen(_Serving):
    def __init__(self, model: SequentialRecommender, k: int):
        super().__init__(model)
        self.k = min(k, model.n_items)

    def forward(self, history: torch.Tensor, seen: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        scores = self.model.head(self.user_vectors(history)).float()  # [B, n_items]
        # One extra column takes the padding tokens (pad_id = n_items), so that history and seen can index it.
        scores = torch.cat([scores, torch.zeros_like(scores[:, :1])], dim=1)  # [B, n_items + 1]
        removed = history if seen is None else torch.cat([history, seen], dim=1)  # [B, W + S]
        scores = scores.scatter(1, removed, float("-inf"))[:, :-1]  # seen items never come back
        top_scores, top_items = top_k_replay_order(scores, self.k)  # [B, k] each
        return top_scores, top_items.masked_fill(top_scores == float("-inf"), -1)  # -1: no unseen item left


def float_head_copy(model: SequentialRecommender) -> SequentialRecommender:
    """`model` itself, or, when its head is not one of the float heads (a SwitchBack int8 head), a copy whose
    head scores the same float weights: a TiedHead with the same tie for a tied one, else a LinearHead."""
    if type(model.head) in (LinearHead, TiedHead):
        return model
    served = copy.deepcopy(model)
    head = served.head
    if isinstance(head, TiedHead):  # TiedSwitchBackHead: the copy's own embedding, features and bias
        served.head = TiedHead.from_tied(head)
    else:
        served.head = LinearHead(head.weight.shape[1], head.weight.shape[0], bias=head.bias is not None)
        served.head.load_state_dict(head.state_dict())
    return served.eval()


def write_function(function: nn.Module, path: Path, inputs: list[str], outputs: list[str], opset: int) -> None:
    """`path`.pt2 (torch.export) and `path`.onnx of a models/serving.py function, dynamic in batch and width."""
    model = function.model
    example = _example_inputs(inputs, model.n_items, model.pad_id, model.max_seq_len)
    program = torch.export.export(function.eval(), example, dynamic_shapes=_dynamic_shapes(inputs, model.max_seq_len))
    torch.export.save(program, path.with_suffix(".pt2"))
    # ONNX from the same program: one trace per function.
    onnx_program = torch.onnx.export(program, dynamo=True, opset_version=opset, input_names=inputs,
                                     output_names=outputs, verbose=False)
    onnx_program.save(str(path.with_suffix(".onnx")))


def _example_inputs(inputs: list[str], n_items: int, pad_id: int, width: int) -> tuple[torch.Tensor, ...]:
    history = torch.randint(0, n_items, (2, width))
    history[0, : width // 2] = pad_id
    others = {"candidates": torch.randint(0, n_items, (2, 3)), "seen": torch.randint(0, n_items, (2, width + 3))}
    others["seen"][0, width:] = pad_id
    return (history, *(others[name] for name in inputs[1:]))


def _dynamic_shapes(inputs: list[str], width: int) -> dict:
    batch = torch.export.Dim("batch", min=1)
    shapes = {"history": {0: batch, 1: torch.export.Dim("width", min=1, max=width)}}
    for name in inputs[1:]:  # candidates [B, C] or seen [B, S]: any number of items
        shapes[name] = {0: batch, 1: torch.export.Dim(f"n_{name}", min=1)}
    return shapes
