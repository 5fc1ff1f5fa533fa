"""What both sequential recommenders share: attention, feed-forward, embeddings, interface.

BERT4Rec (bert4rec.py) and SASRec (sasrec.py) each reproduce their RePlay 0.22 model
weight for weight, and their blocks differ (BERT4Rec: pre-LN blocks with a 4x GELU
feed-forward; SASRec: post-norm residuals around a 1x ReLU feed-forward). Shared here:

    item ids [B, W] -> item embedding (+ learned position, counted from the right edge)
                    -> dropout -> block_count x block -> hidden [B, W, H]
    hidden at chosen positions [N, H] -> item head -> logits [N, n_items]

Token ids: real items are 0..n_items-1, `pad_id = n_items` (BERT4Rec adds its mask token
after it). Sequences are left-padded, so the newest item is always in the last column, and
batches may be trimmed to their longest sequence: positions are counted from the right, so
the newest item always gets position max_seq_len - 1, as in RePlay's full-width batches.
Padding keys are never attended to, so a trimmed batch gives exactly the untrimmed outputs
(SASRec's `padding_attention: replay` excepted, which runs at full width, see sasrec.py).
"""

import contextlib
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from replay_accelerated.models.dropout import Dropout
from replay_accelerated.models.heads import TiedHead
from replay_accelerated.models.item_features import ItemFeatureEmbedding

ITEM_FEATURE_HEADS = ("id_only", "item_representation")  # model_params.item_feature_head


class SelfAttention(nn.Module):
    """Multi-head attention (torch.nn.MultiheadAttention's maths and weights) through the fused SDPA.

    `qkv` is MultiheadAttention's in_proj ([3H, H] weight: query, key, value rows) and `out` its out_proj.
    Training on a CPU with dropout, SDPA runs its unfused math path, in float32 even under bf16 autocast, and
    draws one Bernoulli sample per attention weight (5-7% of a bf16 BERT4Rec step of the seed size, profiled);
    the same maths is then written out here (`math_attention`) with models/dropout.py's cheaper mask.
    """

    def __init__(self, hidden_size: int, head_count: int, dropout_rate: float):
        super().__init__()
        if hidden_size % head_count:
            raise ValueError(f"hidden_size {hidden_size} must be divisible by head_count {head_count}")
        self.head_count = head_count
        self.dropout_rate = dropout_rate
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)
        self.weights_dropout = Dropout(dropout_rate)  # on the attention weights, on a CPU (see above)
        # MultiheadAttention starts its biases at zero (its matrices get xavier-normal from the model).
        nn.init.zeros_(self.qkv.bias)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        # x: [B, L, H] queries; context: [B, L, H] keys and values (x itself when None);
        # allowed: [B, 1, L, L] bool, True where a query may attend to a key
        batch, length, hidden = x.shape
        if context is None:
            q, k, v = self.qkv(x).split(hidden, dim=-1)
        else:  # SASRec: queries from the normalised input, keys and values from the raw one
            weight_q, weight_kv = self.qkv.weight.split([hidden, 2 * hidden])
            bias_q, bias_kv = self.qkv.bias.split([hidden, 2 * hidden])
            q = F.linear(x, weight_q, bias_q)
            k, v = F.linear(context, weight_kv, bias_kv).split(hidden, dim=-1)
        # [B, L, H] -> [B, heads, L, H / heads]
        q, k, v = (t.view(batch, length, self.head_count, -1).transpose(1, 2) for t in (q, k, v))
        if self.training and self.dropout_rate > 0 and x.device.type == "cpu":
            y = self.math_attention(q, k, v, allowed)
        else:
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=allowed, dropout_p=self.dropout_rate if self.training else 0.0
            )
        y = y.transpose(1, 2).reshape(batch, length, hidden)
        return self.out(y)

    def math_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """SDPA's math path with our dropout on the weights: q, k, v [B, heads, L, d] -> [B, heads, L, d].

        The products run in q's dtype (bf16 under bf16 autocast) and the softmax in float32, as SDPA's CPU math
        path does it (which also runs its products in float32)."""
        scores = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5  # [B, heads, L, L]
        weights = torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1, dtype=torch.float32)
        weights = torch.where(allowed.any(dim=-1, keepdim=True), weights, 0.0)  # a query with no key: zeros, as SDPA
        return self.weights_dropout(weights.to(v.dtype)) @ v


class FeedForward(nn.Module):
    """Position-wise feed-forward: Linear(H, inner) -> activation -> dropout -> Linear(inner, H).

    BERT4Rec: inner 4H and GELU; SASRec: inner H and ReLU (RePlay's kernel-1 Conv1d layers are
    these Linear layers). The activation is a module so that an acceleration can swap it.
    """

    def __init__(self, hidden_size: int, inner_size: int, dropout_rate: float, activation: nn.Module):
        super().__init__()
        self.up = nn.Linear(hidden_size, inner_size)
        self.activation = activation
        self.dropout = Dropout(dropout_rate)
        self.down = nn.Linear(inner_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(self.activation(self.up(x))))


class TrainingTask:
    """How a batch of sequences [B, W + 1] (left-padded) becomes a training example, in two halves:

    - `target_mask(is_item, generator)`: which positions are targets ([B, W'] bool), from which positions
      hold an item (is_item [B, W + 1]) and the batch's random draws. It needs no item id, so the host
      plans it from the sequence lengths (training/batches.py) and knows the number of targets without
      asking the device.
    - `inputs_and_labels(sequences, target_mask)`: inputs [B, W'] and labels [B, W'] (item ids at the
      targets, 0, a valid id that the losses ignore, elsewhere), made on the device that holds the items.

    Calling it does both. A small picklable object apart from the model's weights; each model sets its own.
    """

    pad_id: int

    def target_mask(self, is_item: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        raise NotImplementedError

    def inputs_and_labels(self, sequences: torch.Tensor, target_mask: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def __call__(self, sequences: torch.Tensor, generator: torch.Generator | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(inputs, labels, target_mask) of sequences [B, W + 1] whose padding is the model's pad_id."""
        target_mask = self.target_mask(sequences != self.pad_id, generator)
        return (*self.inputs_and_labels(sequences, target_mask), target_mask)


class SequentialRecommender(nn.Module):
    """Embeddings, blocks and item head; subclasses build the blocks and head and define the task.

    Interface used by training, evaluation, losses and accelerations: `n_items`, `pad_id`,
    `max_seq_len`, `item_embedding`, `blocks`, `head` (head(hidden [N, H], item_ids=None) ->
    logits, with `.weight` [n_items, H] and `.bias` [n_items] or None), `forward`,
    `user_vectors`, `score_next`, `next_item_scores`, `training_example`, `prediction_inputs`.
    """

    causal: bool  # SASRec attends only to the past; BERT4Rec to both sides
    training_example: "TrainingTask"  # how a batch of sequences becomes inputs and targets
    extra_tokens: int  # embedding rows after the items: padding (and BERT4Rec's mask token)

    def __init__(self, n_items: int, max_seq_len: int, hidden_size: int, dropout_rate: float,
                 item_features: dict | None = None, item_feature_aggregation: str = "sum",
                 item_feature_head: str = "id_only"):
        super().__init__()
        if item_feature_head not in ITEM_FEATURE_HEADS:
            raise ValueError(f"item_feature_head must be one of {ITEM_FEATURE_HEADS}, got {item_feature_head!r}")
        self.n_items = n_items
        self.pad_id = n_items
        self.max_seq_len = max_seq_len
        self.item_embedding = nn.Embedding(n_items + self.extra_tokens, hidden_size)
        # Item side features (models/item_features.py): None where the model knows items by their ids only.
        self.item_features = None if not item_features else ItemFeatureEmbedding(
            item_features, n_items + self.extra_tokens, hidden_size, item_feature_aggregation)
        self.item_feature_head = item_feature_head
        self.position_embedding = nn.Embedding(max_seq_len, hidden_size)
        self.embedding_dropout = Dropout(dropout_rate)

    @classmethod
    def from_params(cls, n_items: int, model_params, item_features: dict | None = None) -> "SequentialRecommender":
        """The model for a catalog of `n_items` with the sizes of the config's `model.params.model_params`, and
        the item features of `item_features` (data/item_features.py's ItemFeatures.spec(), None: ids only)."""
        return cls(n_items=n_items, max_seq_len=model_params.max_seq_len, hidden_size=model_params.hidden_size,
                   block_count=model_params.block_count, head_count=model_params.head_count,
                   dropout_rate=model_params.dropout_rate, item_features=item_features,
                   item_feature_aggregation=model_params.item_feature_aggregation,
                   item_feature_head=model_params.item_feature_head, **cls.task_params(model_params))

    @staticmethod
    def task_params(model_params) -> dict:
        """Constructor arguments beyond the sizes (BERT4Rec's masking, SASRec's padding attention)."""
        return {}

    def architecture(self) -> dict:
        """Settings that change the outputs but not the weights' shapes, and the item features' `spec` (which
        the weights' shapes do not name). Every checkpoint stores them (training/checkpoints.py), so that a
        checkpoint rebuilds the model it was trained as."""
        settings = {"head_count": self.blocks[0].attention.head_count}
        if self.item_features is not None:
            settings |= {"item_features": self.item_features.spec, "item_feature_head": self.item_feature_head,
                         "item_feature_aggregation": self.item_features.aggregation}
        return settings

    def reset_parameters(self) -> None:
        """As RePlay: every matrix xavier-normal, vectors (biases, norms) at their modules' defaults, the
        padding rows of embeddings zero; then the item features' parts zero (ItemFeatureEmbedding.zero_)."""
        for parameter in self.parameters():
            with contextlib.suppress(ValueError):
                nn.init.xavier_normal_(parameter)
        for module in self.modules():
            if isinstance(module, (nn.Embedding, nn.EmbeddingBag)) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        if self.item_features is not None:
            self.item_features.zero_()

    def tied_head(self, bias: bool) -> TiedHead:
        """A head that scores the item rows the input reads: the id embeddings, plus the features with
        `item_feature_head: item_representation`."""
        features = self.item_features if self.item_feature_head == "item_representation" else None
        return TiedHead(self.item_embedding, self.n_items, bias=bias, item_features=features)

    def item_rows(self) -> torch.Tensor:
        """The input representation of every token: [n_items + extra_tokens, H], the id embeddings combined
        with the item features when there are any."""
        if self.item_features is None:
            return self.item_embedding.weight
        return self.item_features(self.item_embedding.weight)

    def embed(self, item_ids: torch.Tensor, item_scale: float = 1.0) -> torch.Tensor:
        """Item embedding x item_scale + position embedding, before dropout. [B, W] -> [B, W, H]."""
        width = item_ids.shape[1]
        if width > self.max_seq_len:
            raise ValueError(f"sequences of width {width} exceed max_seq_len={self.max_seq_len}; "
                             f"pass the newest {self.max_seq_len} items")
        positions = torch.arange(self.max_seq_len - width, self.max_seq_len, device=item_ids.device)
        if self.item_features is None:
            items = self.item_embedding(item_ids)
        elif self.training and item_ids.numel() < len(self.item_embedding.weight):  # fewer events: each one's row
            flat = item_ids.reshape(-1)
            items = self.item_features(self.item_embedding(flat), flat).view(*item_ids.shape, -1)
        else:  # more events than items, or scoring (an exported graph may not branch on its batch size): every
            # item's row once, read by each event
            items = F.embedding(item_ids, self.item_rows())
        return items * item_scale + self.position_embedding(positions)

    def attention_mask(self, is_token: torch.Tensor) -> torch.Tensor:
        """Where each query may attend, from is_token [B, W]: [B, 1, W, W] bool."""
        width = is_token.shape[1]
        allowed = is_token[:, None, None, :]  # [B, 1, 1, W]: never attend to padding
        if self.causal:
            allowed = allowed & torch.ones(width, width, dtype=torch.bool, device=is_token.device).tril()
        # Let every position see itself, so that padding rows do not attend to nothing and
        # produce NaN: SASRec reads the one before the first item (its "empty history" state).
        return allowed | torch.eye(width, dtype=torch.bool, device=is_token.device)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids: [B, W] left-padded token ids, W <= max_seq_len. Returns hidden [B, W, H]."""
        raise NotImplementedError

    def user_vectors(self, history: torch.Tensor) -> torch.Tensor:
        """The hidden state that scores the next item: history [B, W] left-padded -> [B, H]. An item's
        score is its dot product with the head's row of that item, plus the head's bias."""
        return self(self.prediction_inputs(history))[:, -1]

    def score_next(self, history: torch.Tensor) -> torch.Tensor:
        """Scores of every item as the next one. history: [B, W] left-padded. Returns [B, n_items]."""
        return self.head(self.user_vectors(history))

    def next_item_scores(self, history: torch.Tensor) -> Callable[[int, int], torch.Tensor]:
        """Scores of items start..stop-1 as the next one, as a function of (start, stop) -> [B, stop - start]:
        the model runs once here, the head per item range (evaluation ranks large catalogs range by range)."""
        hidden = self.user_vectors(history)  # [B, H]

        def scores(start: int, stop: int) -> torch.Tensor:
            if start == 0 and stop == self.n_items:
                return self.head(hidden)  # the whole catalog: no gathered copy of the head's rows
            return self.head(hidden, torch.arange(start, stop, device=hidden.device))

        return scores

    def prediction_inputs(self, history: torch.Tensor) -> torch.Tensor:
        """The model input whose last position predicts the item after `history` [B, W]."""
        raise NotImplementedError
