"""The Lightning module that trains any SequentialRecommender with any loss.

Training step: a `TrainingExample` (inputs, labels, target_mask and the number of rows the loss
gathers, made by the loader: training/batches.py) through the model and the loss, which uses only
the positions in target_mask. Nothing in it reads a value from the device (no host synchronisation),
so with `compiled` torch.compile turns model, loss and (through AOTAutograd) their backward into one
graph, without a break (tests/test_compiled_step.py). Its shapes are the batch's width and the loss's
row capacity, both on a coarse grid; after the first change of shape torch.compile makes them dynamic
(one more graph) rather than compiling a graph per shape.
Validation: full-catalog ranking of validation users with seen items removed (in item chunks),
logging `val_ndcg@k` and `val_recall@k` (early stopping watches val_ndcg@10).
"""

import lightning as L
import torch
from torch import nn

from replay_accelerated.errors import TrainingDiverged
from replay_accelerated.evaluation.ranking import VALIDATION_METRICS, ranking_metric_sums, top_k_unseen
from replay_accelerated.models.transformer import SequentialRecommender
from replay_accelerated.training.batches import TrainingExample


class RecommenderModule(L.LightningModule):
    def __init__(self, model: SequentialRecommender, loss: nn.Module, learning_rate: float,
                 weight_decay: float, ks: list[int], targets_per_batch: float | None = None,
                 item_chunk_size: int | None = None, compiled: bool = False):
        super().__init__()
        self.targets_per_batch = targets_per_batch
        self.item_chunk_size = item_chunk_size  # validation ranks the catalog this many items at a time
        self.model = model
        self.loss = loss
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.ks = sorted(ks)
        self._sums: dict[str, torch.Tensor] = {}
        self._users = 0
        self._first_nonfinite_step: torch.Tensor | None = None  # on the device; -1 while the loss is finite
        self._epoch_loss_sum: torch.Tensor | None = None  # on the device: sum of loss x batch size this epoch
        self._epoch_samples = 0
        self.training_loss = torch.compile(self.step_loss, fullgraph=True) if compiled else self.step_loss

    def step_loss(self, example: TrainingExample) -> torch.Tensor:
        """The loss of one training example: model, loss and the corrections below."""
        inputs, labels, target_mask, capacity = example  # [B, W] each, and an int
        hidden = self.model(inputs)  # [B, W, H]
        loss = self.loss(hidden, labels, target_mask, self.model.head, capacity)  # mean over this batch's targets
        # RePlay's masking can leave a batch of short sequences without a target; its mean over no
        # targets is NaN. Such a batch teaches nothing: a zero loss, chosen without a host sync.
        loss = torch.where(target_mask.any(), loss, hidden.sum() * 0.0)
        if self.targets_per_batch is not None:
            # Length-bucketed batches hold very different numbers of targets (few for short histories,
            # many for long ones). Scaling each batch's mean by its share of targets weighs every
            # target the same, as random batches of similar sizes do.
            loss = loss * (target_mask.sum() / self.targets_per_batch)
        return loss

    def training_step(self, example: TrainingExample, batch_index: int) -> torch.Tensor:
        loss = self.training_loss(example)
        # Accumulated on the device and logged once per epoch: no host-device synchronisation per step,
        # and none of the bookkeeping of Lightning's per-step `log` (measured: benchmarks/loop.py).
        weighted = loss.detach() * len(example.inputs)
        self._epoch_loss_sum = weighted if self._epoch_loss_sum is None else self._epoch_loss_sum + weighted
        self._epoch_samples += len(example.inputs)
        if self._first_nonfinite_step is None:
            self._first_nonfinite_step = torch.full((), -1, device=loss.device)
        nonfinite = ~torch.isfinite(loss.detach()) & (self._first_nonfinite_step < 0)
        self._first_nonfinite_step = torch.where(nonfinite, self.global_step, self._first_nonfinite_step)
        return loss

    def check_loss_finite(self) -> None:
        """Stop before this epoch is validated or saved if the loss was ever NaN or infinite."""
        if self._first_nonfinite_step is None or int(self._first_nonfinite_step) < 0:
            return
        raise TrainingDiverged(
            f"the training loss became NaN or infinite at step {int(self._first_nonfinite_step)} "
            f"(epoch {self.current_epoch}); training stopped and the checkpoints of earlier epochs are kept. "
            f"Likely causes: a learning rate too high (now {self.learning_rate}; lower "
            "model.params.training_params.learning_rate), fp16 overflow (use precision=bf16-mixed or 32), "
            "or non-finite values in the data"
        )

    def on_validation_epoch_start(self) -> None:
        self.check_loss_finite()
        self._sums, self._users = {}, 0

    def on_train_epoch_start(self) -> None:
        self._epoch_loss_sum, self._epoch_samples = None, 0

    def on_train_epoch_end(self) -> None:
        self.check_loss_finite()  # epochs without validation
        if self._epoch_samples:
            self.log("train_loss", self._epoch_loss_sum / self._epoch_samples)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        # With several processes each scores its share of the batches; the sums are added up at the end.
        if batch_index % self.trainer.world_size != self.trainer.global_rank:
            return
        _, top_items = top_k_unseen(self.model.next_item_scores(batch["history"]), self.model.n_items,
                                    batch["seen_rows"], batch["seen_items"], max(self.ks), self.item_chunk_size)
        for name, value in ranking_metric_sums(top_items, batch["ground_truth"], self.ks).items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._users += len(batch["history"])

    def on_validation_epoch_end(self) -> None:
        # Over every validation user of every process: sums and user counts added up across processes.
        names = [f"{metric}@{k}" for metric in VALIDATION_METRICS for k in self.ks]
        totals = torch.tensor([float(self._sums.get(name, 0.0)) for name in names] + [float(self._users)],
                              device=self.device, dtype=torch.float64)
        totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
        for name, total in zip(names, totals[:-1]):
            self.log(f"val_{name}", (total / totals[-1]).float(), prog_bar=name == "ndcg@10")

    def configure_optimizers(self):
        # RePlay's default optimizer: Adam with betas (0.9, 0.98); fused (one kernel updates every parameter
        # instead of a few per parameter: PyTorch has it on CPUs and CUDA devices).
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay,
                                betas=(0.9, 0.98), fused=True)
