"""Import a model trained with RePlay 0.22 (`Bert4Rec` or `SasRec`), and save it for `mode=infer`.

    model, item_ids = from_replay("replay.ckpt", tokenizer)  # or a Bert4Rec / SasRec module; tokenizer:
                                                          # RePlay's SequenceTokenizer
    scores = model.score_next(history)                    # history [B, W] left-padded with model.pad_id
    save_for_infer(model, item_ids, "checkpoints/imported")  # best.ckpt + items.parquet

Both RePlay APIs: `replay.models.nn.sequential.Bert4Rec` / `SasRec` (Lightning modules, deprecated
in 0.22) and the newer `replay.nn.sequential.SasRec` (a torch module, trained inside
`replay.nn.lightning.LightningModule`; either, their state dicts or a checkpoint file).

Ids: RePlay's item index i (0..cardinality-1, the tokenizer's order) is our item i, for both
models. RePlay pads with a padding value and a padding mask; we pad with `model.pad_id`
(= n_items, RePlay SASRec's padding row). RePlay BERT4Rec's separate `mask_embedding` becomes
our row `mask_id`. SASRec's kernel-1 Conv1d weights [H, H, 1] become Linear weights [H, H].
In eval mode the imported model gives RePlay's scores on every history: an imported SASRec
attends to padding as RePlay's (`padding_attention="replay"`, see sasrec.py), one of `replay.nn`
as that one in training (`padding_attention="replay_nn"`, its final LayerNorm's eps too), a
setting its checkpoint keeps (`save_for_infer`).

The head count is not in the weights' shapes: it comes from the module (its hyper-parameters, or
`replay.nn`'s attention layers), or from `head_count=` where neither is there (a bare state dict).
A bare `replay.nn` state dict is taken as `SasRec.from_params` builds it: ReLU feed-forward, final
LayerNorm eps 1e-5, padding as the embedding's last row.

A `replay.nn` SasRec with item features (categorical, categorical-list and numerical embedders summed with the
item's, `SumAggregator`) is imported with `item_features={feature: values per item}`, in RePlay's item order and
its codes: RePlay reads them per event, so its weights do not hold which item has which value. They become our
feature buffers (models/item_features.py) with `item_feature_head="id_only"`, RePlay's `get_item_weights`.
"""

import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import torch

from replay_accelerated.models.bert4rec import Bert4Rec
from replay_accelerated.models.heads import TiedHead
from replay_accelerated.models.sasrec import REPLAY_NN_FINAL_EPS, SasRec
from replay_accelerated.models.transformer import SequentialRecommender
from replay_accelerated.models.files import STAMP_KEY, load_checkpoint

BERT4REC_BLOCK = {  # RePlay's Bert4RecModel.transformer_blocks.{i}.<key> -> our blocks.{i}.<value>
    "attention.in_proj_weight": "attention.qkv.weight",
    "attention.in_proj_bias": "attention.qkv.bias",
    "attention.out_proj.weight": "attention.out.weight",
    "attention.out_proj.bias": "attention.out.bias",
    "attention_norm.weight": "attention_norm.weight",
    "attention_norm.bias": "attention_norm.bias",
    "pff.w_1.weight": "feed_forward.up.weight",
    "pff.w_1.bias": "feed_forward.up.bias",
    "pff.w_2.weight": "feed_forward.down.weight",
    "pff.w_2.bias": "feed_forward.down.bias",
    "pff_norm.weight": "feed_forward_norm.weight",
    "pff_norm.bias": "feed_forward_norm.bias",
}
# replay.nn's SasRec (prefixed `model.` in its LightningModule): the weight that tells it.
REPLAY_NN_POSITIONS = "body.embedding_aggregator.pe.weight"
SASREC_BLOCK = {  # RePlay's SasRecModel.sasrec_layers.<list>.{i}.<key> (replay.nn: body.encoder.<list>.{i}.<key>)
                  # -> our blocks.{i}.<value>
    "attention_layers.in_proj_weight": "attention.qkv.weight",
    "attention_layers.in_proj_bias": "attention.qkv.bias",
    "attention_layers.out_proj.weight": "attention.out.weight",
    "attention_layers.out_proj.bias": "attention.out.bias",
    "attention_layernorms.weight": "attention_norm.weight",
    "attention_layernorms.bias": "attention_norm.bias",
    "forward_layers.conv1.weight": "feed_forward.up.weight",
    "forward_layers.conv1.bias": "feed_forward.up.bias",
    "forward_layers.conv2.weight": "feed_forward.down.weight",
    "forward_layers.conv2.bias": "feed_forward.down.bias",
    "forward_layernorms.weight": "feed_forward_norm.weight",
    "forward_layernorms.bias": "feed_forward_norm.bias",
}


def from_replay(module, tokenizer=None, trust_checkpoint: bool = False, head_count: int | None = None,
                item_features=None):
    """Our model with every weight of a RePlay 0.22 `Bert4Rec` or `SasRec` (either API), in eval mode.

    `module`: the Lightning module (or `replay.nn`'s torch module), its checkpoint file (read as
    tensors and plain data only, RePlay's schema and default factories allowed), that checkpoint as
    loaded by torch.load (a dict with "state_dict" and "hyper_parameters"), or a bare state dict. With
    `tokenizer` (RePlay's SequenceTokenizer the model was trained with) returns (model, item_ids):
    item_ids[i] is the original id of item i. `trust_checkpoint=True` unpickles a checkpoint file in
    full, running any code it carries (see models/files.py): only for files from a source you trust.
    `head_count`: RePlay's head count, needed only when the module does not say it (it wins where both
    do and differ: an error). `item_features`, for a `replay.nn` SasRec that embeds item features: {feature name:
    its value for each item, in RePlay's item order}: a code per item (categorical), a list of codes per item or
    a 2-D array padded with the feature's cardinality (categorical list), a number per item (numerical); codes as
    RePlay's embedding reads them (0..cardinality - 1). Our ItemFeatures (data/item_features.py) is read the same.
    """
    if isinstance(module, (str, Path)):
        module = read_replay_checkpoint(Path(module), trust_checkpoint)
    network = None  # the module itself, where given: replay.nn keeps some settings there only
    if isinstance(module, Mapping):
        state, hparams = module.get("state_dict", module), dict(module.get("hyper_parameters", {}))
    else:
        network, state, hparams = module, module.state_dict(), dict(getattr(module, "hparams", {}))
    nn_prefix = next((name[:-len(REPLAY_NN_POSITIONS)] for name in state if name.endswith(REPLAY_NN_POSITIONS)), None)
    if nn_prefix is not None:
        model, weights = _replay_nn_sasrec(state, nn_prefix, network, head_count, item_features)
    else:
        if item_features is not None:
            raise ValueError("item_features are read only for replay.nn's SasRec; the deprecated Bert4Rec and "
                             "SasRec are imported with item ids only")
        is_sasrec = any(name.startswith("_model.sasrec_layers.") for name in state)
        if not is_sasrec and not any(name.startswith("_model.transformer_blocks.") for name in state):
            raise ValueError("not a RePlay Bert4Rec or SasRec: no _model.transformer_blocks.*, "
                             "_model.sasrec_layers.* or body.encoder.* weights; pass the module or its checkpoint")
        hparams["head_count"] = _head_count(hparams, head_count)
        model, weights = (_sasrec if is_sasrec else _bert4rec)(state, hparams)
    model.load_state_dict(weights)  # strict: every weight of ours is set
    model.eval()
    return model if tokenizer is None else (model, replay_item_ids(tokenizer, model.n_items))


def _head_count(hparams: dict, head_count: int | None) -> int:
    """The attention head count: the weights hold every head in one matrix, so it must be told."""
    saved = hparams.get("head_count")
    if saved is None and head_count is None:
        raise ValueError("the RePlay model's hyper-parameters do not say its head_count, and the weights cannot "
                         "tell it; pass from_replay(..., head_count=N) with the head_count it was trained with")
    if saved is not None and head_count is not None and saved != head_count:
        raise ValueError(f"head_count={head_count} was passed, but the RePlay model was trained with "
                         f"head_count={saved}; drop the argument")
    return saved if saved is not None else head_count


def replay_item_ids(tokenizer, n_items: int) -> np.ndarray:
    """Original item ids in RePlay's item order, from its SequenceTokenizer: [n_items]."""
    item_column = tokenizer.tensor_schema.item_id_features.item().feature_source.column
    inverse = tokenizer.item_id_encoder.inverse_mapping[item_column]  # {index: original id}
    if len(inverse) != n_items:
        raise ValueError(f"the tokenizer knows {len(inverse)} items but the model scores {n_items}; "
                         "pass the tokenizer the model was trained with")
    return np.array([inverse[index] for index in range(n_items)])


def save_for_infer(model: SequentialRecommender, item_ids: np.ndarray, checkpoint_dir: str | Path) -> Path:
    """Write `best.ckpt` and `items.parquet` into checkpoint_dir, as `mode=train` does; returns best.ckpt's path.

    `mode=infer` then reads them with `mode.infer.checkpoint=<checkpoint_dir>/best.ckpt` and a model
    config of the same model name, max_seq_len, hidden_size and block_count, and no acceleration that
    changes the weights' names (tied_head on BERT4Rec); the head count and
    SASRec's padding attention come from the file (the model's `architecture()`).
    Our vocabulary is sorted by original id, so the item rows are reordered to that order.
    """
    item_ids = np.asarray(item_ids)
    if len(item_ids) != model.n_items or len(np.unique(item_ids)) != model.n_items:
        raise ValueError(f"item_ids must hold {model.n_items} distinct original ids, one per item of the model "
                         f"(got {len(item_ids)}, {len(np.unique(item_ids))} distinct)")
    order = torch.from_numpy(np.argsort(item_ids, kind="stable"))  # new item i is old item order[i]
    state = {}
    for name, value in model.state_dict().items():
        # Every item-indexed tensor: the embedding rows 0..n_items-1, the head's weight and bias, and each
        # item's feature values (not the features' own embedding tables).
        features = "item_features." in name
        if (name == "item_embedding.weight" or name.startswith("head.") and not features
                or features and name.endswith((".codes", ".numbers"))):
            value = torch.cat([value[: model.n_items][order], value[model.n_items:]])
        state[f"model.{name}"] = value
    checkpoint_dir = Path(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    name = "bert4rec" if isinstance(model, Bert4Rec) else "sasrec"
    path = checkpoint_dir / "best.ckpt"
    torch.save({"state_dict": state, STAMP_KEY: {"fingerprint": None, "model": name, "n_items": model.n_items,
                                                 "architecture": model.architecture()}}, path)
    pd.DataFrame({"item_id": item_ids[order.numpy()]}).to_parquet(checkpoint_dir / "items.parquet", index=False)
    return path


def read_replay_checkpoint(path: Path, trust: bool = False, map_location="cpu") -> dict:
    """A RePlay Lightning checkpoint, unpickling nothing but tensors, plain data and RePlay's schema classes."""
    # Imported here: RePlay takes seconds to import, and only this function needs it.
    from replay.data import FeatureHint, FeatureSource, FeatureType
    from replay.data.nn import TensorFeatureInfo, TensorFeatureSource, TensorSchema
    from replay.models.nn.optimizer_utils import FatLRSchedulerFactory, FatOptimizerFactory
    from replay.nn.lightning.optimizer import OptimizerFactory
    from replay.nn.lightning.scheduler import LRSchedulerFactory

    # The hyper-parameters RePlay saves: its tensor schema and its default optimizer/scheduler factories
    # (replay.nn's LightningModule saves only its factories).
    torch.serialization.add_safe_globals([TensorSchema, TensorFeatureInfo, TensorFeatureSource, FeatureHint,
                                          FeatureSource, FeatureType, FatOptimizerFactory, FatLRSchedulerFactory,
                                          OptimizerFactory, LRSchedulerFactory])
    return load_checkpoint(path, trust, map_location)


def _bert4rec(state: Mapping, hparams: dict) -> tuple[Bert4Rec, dict]:
    _require(hparams, "Bert4Rec", pass_per_transformer_block_count=1, enable_positional_embedding=True)
    embeddings = [name for name in state if name.startswith("_model.item_embedder.cat_embeddings.")]
    if len(embeddings) != 1:
        raise ValueError(f"RePlay Bert4Rec with features besides the item id ({embeddings}) cannot be imported: "
                         "our BERT4Rec reads item ids only")
    items = state[embeddings[0]]  # [n_items, H]
    (n_items, hidden), mask = items.shape, state["_model.item_embedder.mask_embedding.weight"]  # [1, H]
    positions = state["_model.item_embedder.position.pe.weight"]  # [max_seq_len, H]
    blocks = _block_weights(state, "_model.transformer_blocks.", BERT4REC_BLOCK)
    model = Bert4Rec(n_items=n_items, max_seq_len=len(positions), hidden_size=hidden, block_count=len(blocks),
                     head_count=hparams["head_count"], dropout_rate=hparams.get("dropout_rate", 0.1))
    weights = {"item_embedding.weight": torch.cat([items, torch.zeros_like(mask), mask]),  # pad row unused
               "position_embedding.weight": positions}
    for block in blocks:
        weights.update(block)
    used = {embeddings[0], "_model.item_embedder.mask_embedding.weight", "_model.item_embedder.position.pe.weight"}
    if "_model._head.linear.weight" in state:
        weights["head.weight"], weights["head.bias"] = state["_model._head.linear.weight"], state["_model._head.linear.bias"]
        used |= {"_model._head.linear.weight", "_model._head.linear.bias"}
    else:  # enable_embedding_tying: the item embeddings and a bias
        model.head = TiedHead(model.item_embedding, n_items)
        weights["head.item_embedding.weight"], weights["head.bias"] = weights["item_embedding.weight"], state["_model._head.out_bias"]
        # The tied head holds the embedder too: the same tensors under a second name.
        used |= {"_model._head.out_bias"} | _block_names(state, "_model._head._item_embedder.")
    _check_all_used(state, used | _block_names(state, "_model.transformer_blocks."), "Bert4Rec")
    return model, weights


def _sasrec(state: Mapping, hparams: dict) -> tuple[SasRec, dict]:
    _require(hparams, "SasRec", ti_modification=False)
    items = state["_model.item_embedder.item_emb.weight"]  # [n_items + 1, H]: the last row is padding
    positions = state["_model.item_embedder.pos_emb.pe.weight"]  # [max_seq_len, H]
    blocks = _block_weights(state, "_model.sasrec_layers.", SASREC_BLOCK)
    model = SasRec(n_items=len(items) - 1, max_seq_len=len(positions), hidden_size=items.shape[1],
                   block_count=len(blocks), head_count=hparams["head_count"],
                   dropout_rate=hparams.get("dropout_rate", 0.2), padding_attention="replay")
    weights = {"item_embedding.weight": items, "head.item_embedding.weight": items,  # the tied head
               "position_embedding.weight": positions,
               "final_norm.weight": state["_model.output_normalization.last_layernorm.weight"],
               "final_norm.bias": state["_model.output_normalization.last_layernorm.bias"]}
    for block in blocks:
        weights.update(_linear_feed_forward(block))
    used = {"_model.item_embedder.item_emb.weight", "_model.item_embedder.pos_emb.pe.weight",
            "_model.output_normalization.last_layernorm.weight", "_model.output_normalization.last_layernorm.bias",
            # The tied head holds the embedder too: the same tensors under a second name.
            "_model._head._item_embedder.item_emb.weight", "_model._head._item_embedder.pos_emb.pe.weight"}
    _check_all_used(state, used | _block_names(state, "_model.sasrec_layers."), "SasRec")
    return model, weights


def _replay_nn_sasrec(state: Mapping, prefix: str, network, head_count: int | None,
                      item_features) -> tuple[SasRec, dict]:
    """replay.nn's SasRec (`prefix`: "" for the torch module, "model." in its LightningModule). `network`, the
    module where given, tells what the weights cannot: head count, activation, final eps, padding row, dropout."""
    body = prefix + "body."
    body_module = None if network is None else getattr(network, "model", network).body  # a LightningModule wraps it
    embedders = _replay_nn_embedders(state, f"{body}embedder.feature_embedders.")  # feature -> {weight: tensor}
    item_name = _replay_nn_item_feature(embedders, body_module, item_features)
    if set(embedders[item_name]) != {"emb.weight"}:
        raise ValueError(f"RePlay SasRec's item embedder {item_name} holds {sorted(embedders[item_name])}, not an "
                         "embedding table; it cannot be imported")
    items = embedders[item_name]["emb.weight"]  # [n_items + 1, H]: the padding row last (from_params' padding_value)
    settings = {"head_count": None, "dropout_rate": 0.3}  # SasRec.from_params' default dropout
    if body_module is not None:
        settings = _replay_nn_settings(body_module, item_name, len(items))
    blocks = _block_weights(state, f"{body}encoder.", SASREC_BLOCK)
    if blocks and blocks[0]["blocks.0.feed_forward.up.weight"].shape[:2] != (items.shape[1],) * 2:
        raise ValueError("RePlay SasRec with hidden_dim != embedding_dim cannot be imported: our SASRec's "
                         "feed-forward keeps the hidden size")
    features = {name: weights for name, weights in embedders.items() if name != item_name}
    spec, values = _replay_nn_feature_spec(features, item_features, len(items) - 1,
                                           body_module and body_module.embedder)
    model = SasRec(n_items=len(items) - 1, max_seq_len=len(state[prefix + REPLAY_NN_POSITIONS]),
                   hidden_size=items.shape[1], block_count=len(blocks),
                   head_count=_head_count({"head_count": settings["head_count"]}, head_count),
                   dropout_rate=settings["dropout_rate"], padding_attention="replay_nn", item_features=spec or None)
    weights = {"item_embedding.weight": items, "head.item_embedding.weight": items,  # the tied head
               "position_embedding.weight": state[prefix + REPLAY_NN_POSITIONS],
               "final_norm.weight": state[f"{body}output_normalization.weight"],
               "final_norm.bias": state[f"{body}output_normalization.bias"]}
    for block in blocks:
        weights.update(_linear_feed_forward(block))
    if spec:
        model.item_features.load_values(values)
        buffers = model.state_dict()  # the feature values just loaded
        for index, name in enumerate(spec):  # our feature modules follow the spec's order
            ours = f"item_features.features.{index}."
            weights |= {ours + name_ours: features[name][name_replay] for name_replay, name_ours in
                        (("emb.weight", "embedding.weight"), ("linear.weight", "linear.weight"),
                         ("linear.bias", "linear.bias")) if name_replay in features[name]}
            weights |= {key: value for key, value in buffers.items()
                        if key.startswith(ours) and key.endswith(("codes", "numbers"))}
    used = {prefix + REPLAY_NN_POSITIONS, f"{body}output_normalization.weight", f"{body}output_normalization.bias"}
    # The loss's own tensors, if any, only serve training.
    _check_all_used(state, used | _block_names(state, f"{body}encoder.") | _block_names(state, prefix + "loss.")
                    | _block_names(state, f"{body}embedder.feature_embedders."), "SasRec")
    return model, weights


def _replay_nn_embedders(state: Mapping, prefix: str) -> dict[str, dict[str, torch.Tensor]]:
    """RePlay's SequenceEmbedding weights by feature: {feature: {"emb.weight" | "linear.weight" | ...: tensor}}."""
    embedders: dict[str, dict[str, torch.Tensor]] = {}
    for name, value in state.items():
        if name.startswith(prefix):
            feature, _, weight = name[len(prefix):].partition(".")
            embedders.setdefault(feature, {})[weight] = value
    return embedders


def _replay_nn_item_feature(embedders: dict, body_module, item_features) -> str:
    """The name of the item id's embedder: the module says it; without the module, the one embedder that
    `item_features` does not name."""
    if body_module is not None:
        return body_module.embedder._item_feature_name
    named = set(_feature_values(item_features)) if item_features is not None else set()
    candidates = [name for name in embedders if name not in named]
    if len(candidates) != 1:
        raise ValueError(f"RePlay SasRec embeds {sorted(embedders)}: which is the item id cannot be told from a "
                         "state dict; pass item_features={feature: values per item} for every other feature, "
                         "or pass the module itself")
    return candidates[0]


def _feature_values(item_features) -> dict:
    """{feature: values per item} from a mapping, or from our ItemFeatures (codes and numbers by feature)."""
    if hasattr(item_features, "kinds"):  # data/item_features.py's ItemFeatures
        return {**item_features.codes, **item_features.numbers}
    return dict(item_features)


def _replay_nn_feature_spec(features: dict, item_features, n_items: int, embedder) -> tuple[dict, object]:
    """Our item-feature spec (models/item_features.py) of RePlay's feature embedders `features`, and their
    values per item as ItemFeatureEmbedding.load_values reads them (`.codes`, `.numbers`)."""
    if not features:
        if item_features is not None:
            raise ValueError("item_features were passed, but the RePlay SasRec embeds no feature besides the item id")
        return {}, None
    given = _feature_values(item_features) if item_features is not None else {}
    missing, unknown = sorted(set(features) - set(given)), sorted(set(given) - set(features))
    if missing or unknown:
        raise ValueError(f"the RePlay SasRec embeds item features {sorted(features)} besides the item id; "
                         f"item_features {'lacks ' + str(missing) if missing else 'names ' + str(unknown)}: pass "
                         "from_replay(..., item_features={feature: its value for each item}) for exactly those")
    spec, codes, numbers = {}, {}, {}
    for name, weights in features.items():
        module = embedder.feature_embedders[name] if embedder is not None else None
        values = given[name]
        if "linear.weight" in weights:  # NumericalEmbedding: Linear(tensor_dim, H)
            if weights["linear.weight"].shape[1] != 1:
                raise ValueError(f"RePlay feature {name} is a numerical list ({weights['linear.weight'].shape[1]} "
                                 "numbers an event); our model reads one number per item")
            numbers[name] = _per_item(name, np.asarray(values, dtype=np.float32), n_items)
            spec[name] = {"type": "numerical", "cardinality": 0, "width": 1, "values": []}
            continue
        if set(weights) != {"emb.weight"}:
            raise ValueError(f"RePlay feature {name} holds {sorted(weights)}; only categorical, categorical-list "
                             "and numerical embeddings can be imported")
        cardinality = len(weights["emb.weight"]) - 1
        is_list = not np.isscalar(values[0]) and np.ndim(values[0]) != 0
        if module is not None:
            _check_replay_nn_categorical(name, module.emb, cardinality, is_list)
        codes[name] = _per_item(name, _padded_codes(values, cardinality) if is_list
                                else np.asarray(values, dtype=np.int64), n_items)
        if codes[name].min() < 0 or codes[name].max() > cardinality:
            raise ValueError(f"item_features[{name!r}] holds codes outside 0..{cardinality - 1} (its embedding has "
                             f"{cardinality} values and the padding row {cardinality})")
        spec[name] = {"type": "categorical_list" if is_list else "categorical", "cardinality": cardinality,
                      "width": codes[name].shape[1] if is_list else 1, "values": list(range(cardinality))}
    return spec, SimpleNamespace(codes=codes, numbers=numbers)


def _padded_codes(lists, cardinality: int) -> np.ndarray:
    """A list of code lists (or a 2-D array already padded) as [n_items, longest] padded with the cardinality."""
    lists = [np.asarray(codes, dtype=np.int64).ravel() for codes in lists]
    padded = np.full((len(lists), max(1, max(map(len, lists)))), cardinality, dtype=np.int64)
    for row, codes in enumerate(lists):
        padded[row, :len(codes)] = codes
    return padded


def _per_item(name: str, values: np.ndarray, n_items: int) -> np.ndarray:
    if len(values) != n_items:
        raise ValueError(f"item_features[{name!r}] has {len(values)} values; the RePlay SasRec scores {n_items} "
                         "items: give one per item, in RePlay's item order")
    return values


def _check_replay_nn_categorical(name: str, embedding, cardinality: int, is_list: bool) -> None:
    """Stop where RePlay's categorical embedder does what ours does not: a mean or max over a list, another padding
    row, or a list where the values give one code per item (and back)."""
    bag = isinstance(embedding, torch.nn.EmbeddingBag)
    problems = []
    if bag and embedding.mode != "sum":
        problems.append(f"it aggregates its lists by {embedding.mode!r}, ours by sum "
                        "(categorical_list_feature_aggregation_method='sum')")
    if embedding.padding_idx != cardinality:
        problems.append(f"its padding row is {embedding.padding_idx}, ours the last one ({cardinality}): set its "
                        "padding_value to its cardinality")
    if bag != is_list:
        problems.append("it embeds " + ("lists of codes" if bag else "one code") + " per event, but item_features "
                        "gives " + ("lists" if is_list else "one code") + " per item")
    if problems:
        raise ValueError(f"RePlay feature {name} cannot be imported: {problems[0]}")


def _replay_nn_settings(body, item_name: str, n_embeddings: int) -> dict:
    """What a replay.nn SasRecBody holds beyond its weights; stops on what our SASRec does not implement."""
    encoder = body.encoder
    attention = encoder.attention_layers[0]
    activation = encoder.forward_layers[0].activation
    padding_row = body.embedder.feature_embedders[item_name].emb.padding_idx
    for problem, fix in (
            (not isinstance(activation, torch.nn.ReLU), f"its feed-forward activation is {activation}, ours ReLU"),
            (not isinstance(body.output_normalization, torch.nn.LayerNorm)
             or body.output_normalization.eps != REPLAY_NN_FINAL_EPS,
             f"its output normalization is {body.output_normalization}, ours LayerNorm, eps {REPLAY_NN_FINAL_EPS}"),
            (padding_row != n_embeddings - 1, f"its padding row is {padding_row}, ours the last one "
             f"({n_embeddings - 1}): set the item's padding_value to its cardinality")):
        if problem:
            raise ValueError(f"this RePlay SasRec cannot be imported: {fix}")
    return {"head_count": attention.num_heads, "dropout_rate": body.embedding_aggregator.dropout.p}


def _linear_feed_forward(block: dict) -> dict:
    """Conv1d(H, H, kernel_size=1) weights [H, H, 1] are Linear(H, H) weights [H, H]."""
    return {name: value.squeeze(-1) if value.dim() == 3 else value for name, value in block.items()}


def _block_weights(state: Mapping, prefix: str, renames: dict[str, str]) -> list[dict]:
    """Our weights of each block, [{our name: tensor}] in block order, from RePlay's names under prefix.

    RePlay's names carry the block index either first (Bert4Rec: `3.attention...`) or after a
    list name (SasRec: `attention_layers.3...`); both become `blocks.3.<our name>`.
    """
    blocks: dict[int, dict] = {}
    for name, value in state.items():
        if not name.startswith(prefix):
            continue
        match = re.fullmatch(r"(?:(\w+)\.)?(\d+)\.(.+)", name[len(prefix):])
        key = match and (f"{match[1]}.{match[3]}" if match[1] else match[3])
        if key not in renames:
            raise ValueError(f"RePlay weight {name} has no counterpart in our model; only RePlay 0.22's "
                             "standard Bert4Rec and SasRec can be imported")
        index = int(match[2])
        blocks.setdefault(index, {})[f"blocks.{index}.{renames[key]}"] = value
    if sorted(blocks) != list(range(len(blocks))):
        raise ValueError(f"RePlay blocks {sorted(blocks)} are not numbered 0..n-1")
    return [blocks[index] for index in range(len(blocks))]


def _block_names(state: Mapping, prefix: str) -> set[str]:
    return {name for name in state if name.startswith(prefix)}


def _require(hparams: dict, model: str, **expected) -> None:
    """Stop on a RePlay option our model does not have (a missing hyper-parameter is RePlay's default)."""
    for name, value in expected.items():
        if hparams.get(name, value) != value:
            raise ValueError(f"RePlay {model} with {name}={hparams[name]} cannot be imported: our model "
                             f"implements {name}={value} only")


def _check_all_used(state: Mapping, used: set[str], model: str) -> None:
    unused = sorted(name for name in state if name not in used)
    if unused:
        raise ValueError(f"RePlay {model} weights {unused[:5]} have no counterpart in our model; only RePlay "
                         "0.22's standard models (and replay.nn SasRec's item features) can be imported")
