"""The Lightning module that trains any SequentialRecommender with any loss.

Training step: the model makes (inputs, labels, target_mask) from a batch of padded
sequences; the loss uses only the positions in target_mask.
Validation: full-catalog ranking of validation users with seen items removed,
logging `val_ndcg@k` and `val_recall@k` (early stopping watches val_ndcg@10).
"""

import lightning as L
import torch
from torch import nn

from replay_accelerated.evaluation.ranking import ranking_metric_sums, top_k_unseen
from replay_accelerated.models.transformer import SequentialRecommender


class RecommenderModule(L.LightningModule):
    def __init__(self, model: SequentialRecommender, loss: nn.Module, learning_rate: float,
                 weight_decay: float, ks: list[int]):
        super().__init__()
        self.model = model
        self.loss = loss
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.ks = sorted(ks)
        self._sums: dict[str, torch.Tensor] = {}
        self._users = 0

    def training_step(self, sequences: torch.Tensor, batch_index: int) -> torch.Tensor:
        inputs, labels, target_mask = self.model.training_example(sequences)  # [B, W] each
        hidden = self.model(inputs)  # [B, W, H]
        loss = self.loss(hidden, labels, target_mask, self.model.head)
        # Accumulated on the device and read once per epoch: no host-device synchronisation per step.
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(sequences))
        return loss

    def on_validation_epoch_start(self) -> None:
        self._sums, self._users = {}, 0

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> None:
        scores = self.model.score_next(batch["history"])  # [B, n_items]
        _, top_items = top_k_unseen(scores, batch["seen_rows"], batch["seen_items"], max(self.ks))
        for name, value in ranking_metric_sums(top_items, batch["ground_truth"], self.ks).items():
            self._sums[name] = self._sums.get(name, 0.0) + value
        self._users += len(batch["history"])

    def on_validation_epoch_end(self) -> None:
        for name, total in self._sums.items():
            self.log(f"val_{name}", total / self._users, prog_bar=name == "ndcg@10")

    def configure_optimizers(self):
        # RePlay's default optimizer: Adam with betas (0.9, 0.98).
        return torch.optim.Adam(self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay,
                                betas=(0.9, 0.98))
