"""Item side features in the item representation: an item's id embedding combined with its features' embeddings.

    aggregation "sum" (RePlay's SumAggregator):  row_i = id_embedding_i + sum_f feature_f(i)
    aggregation "concat":                        row_i = Linear((1 + F) H, H)(concat(id_embedding_i, feature_1(i), ...))

with, per feature f (RePlay's replay.nn.embedding modules):
    categorical:       Embedding(cardinality + 1, H)[code_i]
    categorical_list:  EmbeddingBag(cardinality + 1, H, mode="sum") over the item's codes
    numerical:         Linear(1, H)(number_i)
The padding code is the cardinality (RePlay's padding value); its row is held at zero, so an item without a
value adds nothing but its numerical features' biases. The extra tokens after the items (padding, BERT4Rec's mask
token) have padding codes and 0 for numbers.

Features are static per item, so a training batch computes whichever is fewer (both counts are shapes, known without
asking the device): each event's row, or every item's row once ([rows, H]), which each event then reads; scoring
always takes every item's row (an exported graph may not branch on its batch size). At MovieLens-20M's
shape (18,345 items, 4,096 events a step) every item's rows cost SASRec 27% more step time, each event's far less. The codes and numbers are buffers: each checkpoint holds them, so infer,
embeddings, export and warm start carry the features without reading the table again (`spec`, also stored with the
checkpoint, rebuilds the shapes).
"""

import numpy as np
import torch
from torch import nn

AGGREGATIONS = ("sum", "concat")


class CategoricalFeature(nn.Module):
    """One categorical (codes [rows]) or categorical-list (codes [rows, longest list]) feature."""

    def __init__(self, name: str, cardinality: int, rows: int, width: int, hidden_size: int, is_list: bool):
        super().__init__()
        self.name = name
        self.cardinality = cardinality
        shape = (rows, width) if is_list else (rows,)
        self.register_buffer("codes", torch.full(shape, cardinality, dtype=torch.long))
        table = nn.EmbeddingBag if is_list else nn.Embedding
        extra = {"mode": "sum"} if is_list else {}
        self.embedding = table(cardinality + 1, hidden_size, padding_idx=cardinality, **extra)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.embedding(self.codes[items])  # [N, H]

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class NumericalFeature(nn.Module):
    """One numerical feature (numbers [rows]), mapped linearly to H."""

    def __init__(self, name: str, rows: int, hidden_size: int):
        super().__init__()
        self.name = name
        self.register_buffer("numbers", torch.zeros(rows))
        self.linear = nn.Linear(1, hidden_size)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.linear(self.numbers[items].unsqueeze(-1).to(self.linear.weight.dtype))  # [N, H]

    def extra_repr(self) -> str:
        return f"name={self.name!r}"


class ItemFeatureEmbedding(nn.Module):
    """The features of `spec` (data/item_features.py's ItemFeatures.spec) for `rows` token rows."""

    def __init__(self, spec: dict[str, dict], rows: int, hidden_size: int, aggregation: str = "sum"):
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"item_feature_aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        self.spec = spec
        self.aggregation = aggregation
        self.features = nn.ModuleList(
            NumericalFeature(name, rows, hidden_size) if entry["type"] == "numerical"
            else CategoricalFeature(name, entry["cardinality"], rows, entry["width"], hidden_size,
                                    is_list=entry["type"] == "categorical_list")
            for name, entry in spec.items()
        )
        self.projection = nn.Linear((1 + len(spec)) * hidden_size, hidden_size) if aggregation == "concat" else None

    def zero_(self) -> None:
        """Every feature's contribution at zero: a model starts as the id-only one, and each feature's share grows as
        training finds it useful. Left to the model's xavier-normal init, an attribute table of a few hundred rows
        gets rows about 4x the id rows of a 10^4-item catalog (its std falls with the table's size), a numerical
        feature's bias a constant up to 1 in every row, and the sum of an item's features swamps its id."""
        with torch.no_grad():
            for feature in self.features:
                for parameter in feature.parameters():
                    parameter.zero_()

    def load_values(self, item_features) -> None:
        """Copy the encoded values of data/item_features.py's ItemFeatures into the first n_items rows."""
        with torch.no_grad():
            for feature in self.features:
                if isinstance(feature, NumericalFeature):
                    values = torch.from_numpy(np.asarray(item_features.numbers[feature.name]))
                    feature.numbers[: len(values)] = values
                else:
                    values = torch.from_numpy(np.asarray(item_features.codes[feature.name]))
                    feature.codes[: len(values)] = values

    def forward(self, id_rows: torch.Tensor, items: torch.Tensor | None = None) -> torch.Tensor:
        """The representation of tokens `items` [N] (None: the first N rows) from their id embeddings
        id_rows [N, H]: [N, H]."""
        if items is None:
            items = torch.arange(len(id_rows), device=id_rows.device)
        parts = [feature(items).to(id_rows.dtype) for feature in self.features]  # F x [N, H]
        if self.projection is None:
            return sum(parts, id_rows)  # added in place of a stack: no [F, N, H] copy
        return self.projection(torch.cat([id_rows, *parts], dim=-1))
