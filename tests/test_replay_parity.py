"""Our BERT4Rec and SASRec against RePlay 0.22's own models with the same random weights.

RePlay's model is built with fresh random weights (LayerNorm weights and biases too, so a
swapped or misplaced norm shows), imported with `from_replay`, and both score the same
histories in eval mode: full score matrices must agree to 1e-5, at every history length.
"""

import numpy as np
import pandas as pd
import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from replay.data import Dataset, FeatureHint, FeatureInfo, FeatureSchema, FeatureSource, FeatureType
from replay.data.nn import SequenceTokenizer, TensorFeatureInfo, TensorFeatureSource, TensorSchema
from replay.models.nn.sequential import Bert4Rec as ReplayBert4Rec
from replay.models.nn.sequential import SasRec as ReplaySasRec
from replay.models.nn.sequential.bert4rec.dataset import _shift_features

from replay_accelerated.data.sequences import ItemVocabulary
from replay_accelerated.training.trained_model import read_trained
from replay_accelerated.models import Bert4Rec, SasRec, from_replay, save_for_infer
from replay_accelerated.models.replay_import import read_replay_checkpoint
from replay_accelerated.models.files import UntrustedCheckpoint
from test_checkpoint_safety import crafted_checkpoint

ITEM = "item_id"
# (n_items, hidden, heads, blocks, max_seq_len): one head and several, 1 and 3 blocks, odd lengths.
SIZES = [(23, 8, 1, 1, 5), (41, 16, 4, 3, 7), (17, 12, 3, 2, 6)]


def _schema(n_items: int, hidden: int) -> TensorSchema:
    return TensorSchema(TensorFeatureInfo(
        name=ITEM, feature_type=FeatureType.CATEGORICAL, is_seq=True, feature_hint=FeatureHint.ITEM_ID,
        feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, "item")], cardinality=n_items,
        embedding_dim=hidden,
    ))


def _randomized(module):
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    return module.eval()


def _histories(lengths: list[int], width: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random left-padded histories [B, width] in RePlay's item ids and their padding mask (True: item)."""
    positions = torch.arange(width)
    is_item = positions >= width - torch.tensor(lengths)[:, None]  # [B, width]
    items = torch.randint(0, n_items, (len(lengths), width))
    return torch.where(is_item, items, 0), is_item  # RePlay pads with 0, told apart by the mask


def _replay_bert4rec_scores(replay, schema: TensorSchema, items: torch.Tensor, is_item: torch.Tensor) -> torch.Tensor:
    """RePlay's BERT4Rec scores of full-width histories, shifted sample by sample as its prediction dataset does.

    (RePlay's `predict` pads and shifts narrower batches itself, but shifts along the batch
    dimension: its per-sample `_shift_features` applied to a whole batch.)
    """
    shifted = [_shift_features(schema, {ITEM: row}, mask) for row, mask in zip(items, is_item)]
    return replay.predict({"inputs": {ITEM: torch.stack([s[0][ITEM] for s in shifted])},
                           "pad_mask": torch.stack([s[1] for s in shifted]),
                           "token_mask": torch.stack([s[2] for s in shifted])})


def _ours(items: torch.Tensor, is_item: torch.Tensor, model) -> torch.Tensor:
    return torch.where(is_item, items, model.pad_id)


@pytest.mark.parametrize("n_items, hidden, heads, blocks, max_len", SIZES)
@pytest.mark.parametrize("tying", [False, True])
def test_bert4rec_scores_equal_replay_on_padded_histories(n_items, hidden, heads, blocks, max_len, tying):
    schema = _schema(n_items, hidden)
    replay = _randomized(ReplayBert4Rec(schema, block_count=blocks, head_count=heads, hidden_size=hidden,
                                        max_seq_len=max_len, dropout_rate=0.1, enable_embedding_tying=tying))
    model = from_replay(replay)
    lengths = [max_len, max_len - 1, 1, 2] + torch.randint(1, max_len + 1, (6,)).tolist()
    items, is_item = _histories(lengths, max_len, n_items)

    with torch.no_grad():
        expected = _replay_bert4rec_scores(replay, schema, items, is_item)  # [B, n_items]
        torch.testing.assert_close(model.score_next(_ours(items, is_item, model)), expected, rtol=1e-5, atol=1e-5)
        # A history trimmed to its longest sequence scores as the full-width one: only padding is cut.
        narrow = max(max_len - 2, 1)
        trimmed = torch.where(is_item, items, model.pad_id)[:, -narrow:]
        keep = ~is_item[:, :-narrow].any(dim=1)  # rows whose items all fit
        torch.testing.assert_close(model.score_next(trimmed)[keep], expected[keep], rtol=1e-5, atol=1e-5)

        # Training-time inputs: random masked positions, logits at every position of every sequence.
        items, is_item = _histories(lengths, max_len, n_items)
        token_mask = (torch.rand(items.shape) > 0.3) | ~is_item  # False: masked item
        expected = replay._model({ITEM: items}, is_item, token_mask)  # [B, L, n_items]
        inputs = torch.where(token_mask, _ours(items, is_item, model), model.mask_id)
        logits = model.head(model(inputs))
        # Logits at every position of randomized weights reach ~10: fp32 sums in another order differ by ~1e-5.
        torch.testing.assert_close(logits[is_item], expected[is_item], rtol=1e-4, atol=3e-5)


@pytest.mark.parametrize("n_items, hidden, heads, blocks, max_len", SIZES)
def test_sasrec_scores_equal_replay_on_full_length_histories(n_items, hidden, heads, blocks, max_len):
    replay = _randomized(ReplaySasRec(_schema(n_items, hidden), block_count=blocks, head_count=heads,
                                      hidden_size=hidden, max_seq_len=max_len, dropout_rate=0.2))
    model = from_replay(replay)
    items, is_item = _histories([max_len] * 8, max_len, n_items)
    with torch.no_grad():
        expected = replay.predict({"feature_tensor": {ITEM: items}, "padding_mask": is_item})  # [B, n_items]
        torch.testing.assert_close(model.score_next(items), expected, rtol=1e-5, atol=1e-5)
        # Every position (what training reads): causal outputs through the tied head.
        expected = replay._model({ITEM: items}, is_item)  # [B, L, n_items]
        torch.testing.assert_close(model.head(model(items)), expected, rtol=1e-5, atol=1e-5)


def _briefly_trained(replay, batch_loss):
    """`replay` after 30 Adam steps on `batch_loss()`, each a fresh random batch's loss, in eval mode."""
    optimizer = torch.optim.Adam(replay.parameters(), lr=1e-2)
    replay.train()
    for _ in range(30):
        loss = batch_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return replay.eval()


def _next_item_loss(replay, n_items: int, max_len: int):
    """RePlay's SasRec's own next-item cross-entropy on a batch of random histories."""
    items, is_item = _histories(torch.randint(1, max_len + 1, (16,)).tolist(), max_len, n_items)
    logits = replay._model({ITEM: items}, is_item)  # [B, L, n_items]
    targets = is_item[:, 1:]  # position t predicts item t + 1
    return torch.nn.functional.cross_entropy(logits[:, :-1][targets], items[:, 1:][targets])


@pytest.mark.parametrize("trained", [False, True])
def test_imported_sasrec_scores_as_replay_at_every_history_length(tmp_path, trained):
    """RePlay's SasRec attends to its zeroed padding; the import reproduces that (padding_attention="replay"),
    through score_next, a saved checkpoint loaded as mode=infer loads it, and the exported files."""
    import onnxruntime

    from conftest import compose
    from replay_accelerated.models.serving import NextItemScores, write_function
    from replay_accelerated.training.trained_model import load_trained_model

    n_items, hidden, heads, max_len = 31, 16, 4, 8
    replay = _randomized(ReplaySasRec(_schema(n_items, hidden), block_count=2, head_count=heads, hidden_size=hidden,
                                      max_seq_len=max_len, dropout_rate=0.2))
    if trained:
        replay = _briefly_trained(replay, lambda: _next_item_loss(replay, n_items, max_len))
    model = from_replay(replay)
    assert model.padding_attention == "replay"
    lengths = [1, 2, 5, max_len] * 3
    items, is_item = _histories(lengths, max_len, n_items)
    history = _ours(items, is_item, model)
    with torch.no_grad():
        expected = replay.predict({"feature_tensor": {ITEM: items}, "padding_mask": is_item})  # [B, n_items]
        torch.testing.assert_close(model.score_next(history), expected, rtol=1e-5, atol=1e-5)
        # A batch trimmed to its longest history scores the same: the model pads it back to max_seq_len.
        short = torch.tensor(lengths) <= 5
        torch.testing.assert_close(model.score_next(history[short][:, -5:]), expected[short], rtol=1e-5, atol=1e-5)

    # Saved for infer, and loaded with a model config that says head_count=1 and masked padding: the
    # checkpoint's architecture wins.
    save_for_infer(model, np.arange(n_items), tmp_path / "imported")
    cfg = compose(tmp_path, "model=sasrec", f"model.params.model_params.max_seq_len={max_len}",
                  f"model.params.model_params.hidden_size={hidden}", f"model.params.training_params.embedding_dim={hidden}",
                  "model.params.model_params.head_count=1")
    loaded, _ = load_trained_model(cfg, str(tmp_path / "imported" / "best.ckpt"))
    assert loaded.architecture() == {"head_count": heads, "padding_attention": "replay"}
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_next(history), expected, rtol=1e-5, atol=1e-5)
    if trained:  # the exported files (a few seconds each: once)
        write_function(NextItemScores(loaded), tmp_path / "model", ["history"], ["scores"], opset=18)
        program = torch.export.load(tmp_path / "model.pt2").module()
        session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
        torch.testing.assert_close(program(history), expected, rtol=1e-5, atol=1e-5)
        onnx = session.run(None, {"history": history[short][:, -5:].numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(onnx), expected[short], rtol=1e-5, atol=1e-5)


def test_our_masked_sasrec_differs_from_replay_only_by_the_masked_padding_keys():
    """Our default (padding_attention="masked") blocks padding keys, where RePlay attends to them."""
    n_items, hidden, heads, max_len = 19, 8, 2, 6
    replay = _randomized(ReplaySasRec(_schema(n_items, hidden), block_count=2, head_count=heads, hidden_size=hidden,
                                      max_seq_len=max_len, dropout_rate=0.2))
    model = from_replay(replay)
    model.padding_attention = "masked"
    items, is_item = _histories([2, 3, 5], max_len, n_items)
    batch = {"feature_tensor": {ITEM: items}, "padding_mask": is_item}
    with torch.no_grad():
        ours = model.score_next(_ours(items, is_item, model))
        assert not torch.allclose(ours, replay.predict(batch), atol=1e-3)
        # RePlay with our attention mask (causal, padding keys blocked) gives our scores.
        blocked = ~model.attention_mask(is_item)[:, 0].repeat_interleave(heads, 0)  # [B * heads, L, L]
        replay._model.masking = lambda features, padding_mask: (
            blocked, padding_mask.unsqueeze(-1), {ITEM: features[ITEM].masked_fill(~padding_mask, n_items)})
        torch.testing.assert_close(ours, replay.predict(batch), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("replay_class", [ReplayBert4Rec, ReplaySasRec])
def test_a_state_dict_without_hyper_parameters_needs_its_head_count(replay_class):
    replay = _randomized(replay_class(_schema(13, 8), block_count=1, head_count=4, hidden_size=8, max_seq_len=5))
    with pytest.raises(ValueError, match="head_count"):
        from_replay({"state_dict": replay.state_dict()})
    with pytest.raises(ValueError, match="head_count=4"):
        from_replay(replay, head_count=2)
    model = from_replay({"state_dict": replay.state_dict()}, head_count=4)
    assert model.blocks[0].attention.head_count == 4
    items = torch.randint(0, 13, (3, 5))
    with torch.no_grad():
        torch.testing.assert_close(model.score_next(items), from_replay(replay).score_next(items))


def test_import_from_a_lightning_checkpoint_file_and_unsupported_options(tmp_path):
    replay = _randomized(ReplaySasRec(_schema(11, 8), block_count=2, head_count=2, hidden_size=8, max_seq_len=4))
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(replay)
    trainer.save_checkpoint(tmp_path / "replay.ckpt")  # holds RePlay's tensor schema and optimizer factory
    model = from_replay(tmp_path / "replay.ckpt")
    assert isinstance(model, SasRec) and model.blocks[0].attention.head_count == 2
    items = torch.randint(0, 11, (3, 4))
    with torch.no_grad():
        torch.testing.assert_close(model.score_next(items), replay.predict(
            {"feature_tensor": {ITEM: items}, "padding_mask": torch.ones(3, 4, dtype=torch.bool)}), rtol=1e-5, atol=1e-5)

    # The same file with a payload hidden inside is refused, and its code does not run, unless trusted.
    contents = read_replay_checkpoint(tmp_path / "replay.ckpt")
    marker = tmp_path / "created_by_the_payload"
    crafted = crafted_checkpoint(tmp_path / "crafted.ckpt", marker, contents)
    with pytest.raises(UntrustedCheckpoint, match="trust_checkpoint=true"):
        from_replay(crafted)
    assert not marker.exists()
    assert isinstance(from_replay(crafted, trust_checkpoint=True), SasRec) and marker.exists()

    with pytest.raises(ValueError, match="pass_per_transformer_block_count=2"):
        from_replay(ReplayBert4Rec(_schema(11, 8), block_count=1, head_count=2, hidden_size=8, max_seq_len=4,
                                   pass_per_transformer_block_count=2))
    with pytest.raises(ValueError, match="not a RePlay Bert4Rec or SasRec"):
        from_replay({"state_dict": {"weight": torch.zeros(1)}})


@pytest.mark.parametrize("replay_class", [ReplayBert4Rec, ReplaySasRec])
def test_saved_import_is_read_by_infer_with_original_ids(tmp_path, replay_class):
    # Original ids in an order RePlay's tokenizer does not sort: our vocabulary is sorted, rows must follow.
    rng = np.random.default_rng()
    originals = rng.permutation(np.arange(100, 100 + 3 * 15, 3))  # 15 items
    events = pd.DataFrame({"user": np.repeat(np.arange(6), 10), "item": rng.choice(originals, 60),
                           "timestamp": np.arange(60)})
    events = pd.concat([events, pd.DataFrame({"user": 7, "item": originals, "timestamp": 60 + np.arange(15)})])
    feature_schema = FeatureSchema([
        FeatureInfo("user", FeatureType.CATEGORICAL, FeatureHint.QUERY_ID),
        FeatureInfo("item", FeatureType.CATEGORICAL, FeatureHint.ITEM_ID),
        FeatureInfo("timestamp", FeatureType.NUMERICAL, FeatureHint.TIMESTAMP),
    ])
    tokenizer = SequenceTokenizer(TensorSchema(TensorFeatureInfo(
        name=ITEM, feature_type=FeatureType.CATEGORICAL, is_seq=True, feature_hint=FeatureHint.ITEM_ID,
        feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, "item")], embedding_dim=8)))
    tokenizer.fit(Dataset(feature_schema=feature_schema, interactions=events))
    replay = _randomized(replay_class(tokenizer.tensor_schema, block_count=1, head_count=2, hidden_size=8,
                                      max_seq_len=5))
    model, item_ids = from_replay(replay, tokenizer)
    mapping = tokenizer.item_id_encoder.mapping["item"]
    assert all(mapping[original] == index for index, original in enumerate(item_ids))

    checkpoint = save_for_infer(model, item_ids, tmp_path / "imported")
    name = "bert4rec" if replay_class is ReplayBert4Rec else "sasrec"
    cfg = OmegaConf.create({"model": {"name": name, "save_name": "imported"}, "trust_checkpoint": False})
    vocabulary, state, _ = read_trained(checkpoint, cfg, "mode.infer.checkpoint")
    model_class = Bert4Rec if replay_class is ReplayBert4Rec else SasRec
    loaded = model_class(n_items=15, max_seq_len=5, hidden_size=8, block_count=1, head_count=2, dropout_rate=0.1)
    loaded.load_state_dict(state)
    loaded.eval()
    history = rng.choice(originals, (4, 5))  # original ids
    replay_ids = torch.tensor([[mapping[item] for item in row] for row in history])
    our_ids = torch.from_numpy(vocabulary.encode(pd.Series(history.ravel())).reshape(4, 5))
    with torch.no_grad():
        imported, reloaded = model.score_next(replay_ids), loaded.score_next(our_ids)  # [4, 15] each
    # Column j of `reloaded` is original id vocabulary.item_ids[j]; of `imported`, item_ids[j].
    torch.testing.assert_close(reloaded, imported[:, [mapping[item] for item in vocabulary.item_ids]])
    assert isinstance(vocabulary, ItemVocabulary) and list(vocabulary.item_ids) == sorted(originals)


# RePlay 0.22's newer API: replay.nn.sequential.SasRec (a torch module, trained in replay.nn.lightning's
# LightningModule), padded with the item cardinality, as its SequenceEmbedding expects.

def _nn_schema(n_items: int, hidden: int, padding_value: int | None = None) -> TensorSchema:
    return TensorSchema(TensorFeatureInfo(
        name=ITEM, feature_type=FeatureType.CATEGORICAL, is_seq=True, feature_hint=FeatureHint.ITEM_ID,
        feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, "item")], cardinality=n_items,
        padding_value=n_items if padding_value is None else padding_value, embedding_dim=hidden))


def _replay_nn_sasrec(n_items: int, hidden: int, heads: int, blocks: int, max_len: int, dropout: float = 0.2):
    from replay.nn.sequential import SasRec as ReplayNnSasRec

    replay = _randomized(ReplayNnSasRec.from_params(_nn_schema(n_items, hidden), embedding_dim=hidden, num_heads=heads,
                                                    num_blocks=blocks, max_sequence_length=max_len, dropout=dropout))
    with torch.no_grad():  # its padding row stays zero (the embedding's padding_idx), whatever the training
        replay.body.embedder.feature_embedders[ITEM].emb.weight[n_items] = 0
    return replay


def _nn_histories(lengths: list[int], width: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Histories as replay.nn reads them: padded with n_items (our pad_id too), and the mask (True: item)."""
    items, is_item = _histories(lengths, width, n_items)
    return torch.where(is_item, items, n_items), is_item


def _nn_loss(replay, n_items: int, max_len: int):
    """replay.nn's SasRec's own loss (CE) on a batch of random next-item sequences."""
    items, is_item = _nn_histories(torch.randint(1, max_len + 2, (16,)).tolist(), max_len + 1, n_items)
    return replay(feature_tensors={ITEM: items[:, :-1]}, padding_mask=is_item[:, :-1],
                  positive_labels=items[:, 1:, None], target_padding_mask=is_item[:, 1:, None])["loss"]


@pytest.mark.parametrize("trained", [False, True])
def test_imported_replay_nn_sasrec_scores_as_its_forward_inference_at_every_history_length(tmp_path, trained):
    """replay.nn's SasRec differs from the deprecated one: its final LayerNorm eps (1e-5) and its padding rows;
    the import reproduces both (padding_attention="replay_nn"), saved for infer too."""
    from conftest import compose
    from replay_accelerated.training.trained_model import load_trained_model

    n_items, hidden, heads, max_len = 31, 16, 4, 8
    replay = _replay_nn_sasrec(n_items, hidden, heads, 2, max_len)
    if trained:
        replay = _briefly_trained(replay, lambda: _nn_loss(replay, n_items, max_len))
    model = from_replay(replay)
    assert model.architecture() == {"head_count": heads, "padding_attention": "replay_nn"}
    assert model.final_norm.eps == 1e-5  # replay.nn's, where the deprecated SasRec's is 1e-8
    lengths = [1, 2, 5, max_len] * 3
    items, is_item = _nn_histories(lengths, max_len, n_items)
    with torch.no_grad():
        expected = replay.forward_inference({ITEM: items}, is_item)["logits"]  # [B, n_items]
        torch.testing.assert_close(model.score_next(items), expected, rtol=1e-5, atol=1e-5)
        short = torch.tensor(lengths) <= 5  # a batch trimmed to its longest history scores the same
        torch.testing.assert_close(model.score_next(items[short][:, -5:]), expected[short], rtol=1e-5, atol=1e-5)

    save_for_infer(model, np.arange(n_items), tmp_path / "imported")
    cfg = compose(tmp_path, "model=sasrec", f"model.params.model_params.max_seq_len={max_len}",
                  f"model.params.model_params.hidden_size={hidden}",
                  f"model.params.training_params.embedding_dim={hidden}", "model.params.model_params.head_count=1")
    loaded, _ = load_trained_model(cfg, str(tmp_path / "imported" / "best.ckpt"))
    assert loaded.architecture() == model.architecture()
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_next(items), expected, rtol=1e-5, atol=1e-5)


def test_replay_nn_training_outputs_differ_from_masked_only_at_padding_positions():
    """In training (dropout off), every position's logits equal replay.nn's, padding positions too, among them
    the one before the first item, which predicts it; our default ("masked") zeroes the padding rows, which
    changes only those positions; the final eps alone moves the scores too."""
    n_items, hidden, heads, max_len = 23, 8, 2, 7
    replay = _replay_nn_sasrec(n_items, hidden, heads, 3, max_len, dropout=0.0)
    model = from_replay(replay)
    items, is_item = _nn_histories([1, 2, 5, max_len, 3, 6], max_len, n_items)
    replay.train()
    model.train()
    with torch.no_grad():
        expected = replay.get_logits(replay.body({ITEM: items}, is_item))  # [B, L, n_items]
        torch.testing.assert_close(model.head(model(items)), expected, rtol=1e-5, atol=1e-5)
        model.padding_attention = "masked"
        masked = model.head(model(items))
        torch.testing.assert_close(masked[is_item], expected[is_item], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(masked[~is_item], expected[~is_item], atol=1e-2)
        model.padding_attention = "replay_nn"
        model.final_norm.eps = 1e-8
        assert not torch.allclose(model.head(model(items))[is_item], expected[is_item], rtol=0, atol=1e-6)


def test_replay_nn_sasrec_imports_from_its_lightning_module_checkpoint_and_state_dicts(tmp_path):
    from replay.nn.lightning import LightningModule
    from replay.nn.lightning.optimizer import OptimizerFactory

    n_items, hidden, heads, max_len = 11, 8, 2, 4
    replay = _replay_nn_sasrec(n_items, hidden, heads, 2, max_len)
    wrapper = LightningModule(replay, optimizer_factory=OptimizerFactory(learning_rate=0.01))
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(wrapper)
    trainer.save_checkpoint(tmp_path / "replay_nn.ckpt")  # holds its optimizer factory, not its head count
    items, is_item = _nn_histories([1, 3, 4], max_len, n_items)
    with torch.no_grad():
        expected = replay.eval().forward_inference({ITEM: items}, is_item)["logits"]
        for source, count in ((wrapper, None), (tmp_path / "replay_nn.ckpt", heads), (replay.state_dict(), heads),
                              ({"state_dict": wrapper.state_dict()}, heads)):
            torch.testing.assert_close(from_replay(source, head_count=count).score_next(items), expected,
                                       rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="head_count"):
        from_replay(replay.state_dict())
    with pytest.raises(ValueError, match="head_count=2"):
        from_replay(wrapper, head_count=4)


def test_replay_nn_sasrec_our_model_cannot_reproduce_is_refused():
    from replay.nn.agg import SumAggregator
    from replay.nn.embedding import SequenceEmbedding
    from replay.nn.loss import CE
    from replay.nn.mask import DefaultAttentionMask
    from replay.nn.sequential import PositionAwareAggregator, SasRecBody, SasRecTransformerLayer
    from replay.nn.sequential import SasRec as ReplayNnSasRec

    n_items, hidden = 11, 8

    def built(activation: str = "relu", padding_value: int = n_items, hidden_dim: int | None = None,
              eps: float = 1e-5):
        schema = _nn_schema(n_items, hidden, padding_value)
        return ReplayNnSasRec(SasRecBody(
            embedder=SequenceEmbedding(schema),
            embedding_aggregator=PositionAwareAggregator(SumAggregator(hidden), 4, 0.1),
            attn_mask_builder=DefaultAttentionMask(ITEM, 2),
            encoder=SasRecTransformerLayer(hidden, 2, 1, 0.1, activation=activation, hidden_dim=hidden_dim),
            output_normalization=torch.nn.LayerNorm(hidden, eps=eps)), loss=CE(ignore_index=padding_value))

    assert isinstance(from_replay(built()), SasRec)
    with pytest.raises(ValueError, match="hidden_dim"):
        from_replay(built(hidden_dim=2 * hidden).state_dict(), head_count=2)
    with pytest.raises(ValueError, match="GELU"):
        from_replay(built(activation="gelu"))
    with pytest.raises(ValueError, match="eps=1e-08"):
        from_replay(built(eps=1e-8))
    with pytest.warns(UserWarning, match="padding value"), pytest.raises(ValueError, match="padding_value"):
        from_replay(built(padding_value=0))


def _replay_nn_sasrec_with_features(n_items: int, hidden: int, heads: int, max_len: int, cardinalities: dict):
    """replay.nn's SasRec.from_params over the item id and one feature of each type (RePlay's TensorSchema, summed
    by its SumAggregator), random weights; padding rows zero, as its embeddings keep them."""
    from replay.nn.sequential import SasRec as ReplayNnSasRec

    def info(name, feature_type, **size):
        return TensorFeatureInfo(name=name, feature_type=feature_type, is_seq=True, embedding_dim=hidden,
                                 feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, name)], **size)

    schema = TensorSchema([
        *_nn_schema(n_items, hidden).all_features,
        info("brand", FeatureType.CATEGORICAL, cardinality=cardinalities["brand"],
             padding_value=cardinalities["brand"]),
        info("genres", FeatureType.CATEGORICAL_LIST, cardinality=cardinalities["genres"],
             padding_value=cardinalities["genres"]),
        info("year", FeatureType.NUMERICAL, tensor_dim=1)])
    replay = _randomized(ReplayNnSasRec.from_params(schema, embedding_dim=hidden, num_heads=heads, num_blocks=2,
                                                    max_sequence_length=max_len, dropout=0.2))
    with torch.no_grad():
        for name, embedder in replay.body.embedder.feature_embedders.items():
            if hasattr(embedder, "emb"):
                embedder.emb.weight[embedder.emb.padding_idx] = 0
    return replay


def _random_item_features(n_items: int, cardinalities: dict) -> dict:
    """Each item's brand code, its list of 0 to 3 genre codes, and a number, in RePlay's item order."""
    rng = np.random.default_rng()
    return {"brand": rng.integers(0, cardinalities["brand"], n_items),
            "genres": [rng.choice(cardinalities["genres"], rng.integers(0, 4), replace=False) for _ in range(n_items)],
            "year": rng.normal(size=n_items).astype(np.float32)}


def _event_feature_tensors(items: torch.Tensor, values: dict, cardinalities: dict) -> dict:
    """What replay.nn reads per event: each position's item's values; padding positions (item n_items) get the
    features' padding values (the cardinality; 0 for a number)."""
    n_items = len(values["year"])
    longest = max(1, max(len(genres) for genres in values["genres"]))
    brand = torch.tensor([*values["brand"], cardinalities["brand"]])
    genres = torch.full((n_items + 1, longest), cardinalities["genres"])
    for item, codes in enumerate(values["genres"]):
        genres[item, :len(codes)] = torch.as_tensor(codes)
    year = torch.tensor([*values["year"], 0.0])
    return {ITEM: items, "brand": brand[items], "genres": genres[items], "year": year[items]}


def test_imported_replay_nn_sasrec_with_item_features_scores_as_its_forward_inference(tmp_path):
    """RePlay's feature-aware SasRec (categorical, categorical-list and numerical features summed with the item's)
    imported with each item's values: every score within 1e-5 at every history length, also saved for infer with
    its items reordered; a state dict needs the values to tell the item id apart, and wrong values are refused."""
    from conftest import compose
    from replay_accelerated.training.trained_model import load_trained_model

    n_items, hidden, heads, max_len = 29, 16, 2, 7
    cardinalities = {"brand": 5, "genres": 6}
    replay = _replay_nn_sasrec_with_features(n_items, hidden, heads, max_len, cardinalities)
    values = _random_item_features(n_items, cardinalities)
    model = from_replay(replay, item_features=values)
    assert model.item_feature_head == "id_only" and len(model.item_features.features) == 3
    lengths = [1, 2, 5, max_len] * 3
    items, is_item = _nn_histories(lengths, max_len, n_items)
    with torch.no_grad():
        expected = replay.forward_inference(_event_feature_tensors(items, values, cardinalities), is_item)["logits"]
        torch.testing.assert_close(model.score_next(items), expected, rtol=1e-5, atol=1e-5)
        from_state = from_replay(replay.state_dict(), head_count=heads, item_features=values)
        torch.testing.assert_close(from_state.eval().score_next(items), expected, rtol=1e-5, atol=1e-5)
        reversed_years = from_replay(replay, item_features={**values, "year": values["year"][::-1].copy()})
        assert not torch.allclose(reversed_years.score_next(items), expected, atol=1e-3)  # the values count

    original_ids = np.random.default_rng().permutation(np.arange(100, 100 + n_items))  # saved in sorted id order
    save_for_infer(model, original_ids, tmp_path / "imported")
    cfg = compose(tmp_path, "model=sasrec", f"model.params.model_params.max_seq_len={max_len}",
                  f"model.params.model_params.hidden_size={hidden}",
                  f"model.params.training_params.embedding_dim={hidden}", "model.params.model_params.head_count=1")
    loaded, _ = load_trained_model(cfg, str(tmp_path / "imported" / "best.ckpt"))
    position = torch.from_numpy(np.argsort(np.argsort(original_ids, kind="stable")))  # old item -> its new row
    with torch.no_grad():
        torch.testing.assert_close(loaded.score_next(torch.where(is_item, position[items.clamp(max=n_items - 1)],
                                                                 n_items))[:, position], expected,
                                   rtol=1e-5, atol=1e-5)

    with pytest.raises(ValueError, match=r"item_features lacks \['genres'\]"):
        from_replay(replay, item_features={name: value for name, value in values.items() if name != "genres"})
    with pytest.raises(ValueError, match="which is the item id cannot be told"):
        from_replay(replay.state_dict(), head_count=heads)
    with pytest.raises(ValueError, match="has 28 values"):
        from_replay(replay, item_features={**values, "year": values["year"][:-1]})
    with pytest.raises(ValueError, match="codes outside 0..4"):
        from_replay(replay, item_features={**values, "brand": np.full(n_items, 7)})
    with pytest.raises(ValueError, match="one code per event"):
        from_replay(replay, item_features={**values, "brand": [[code] for code in values["brand"]]})
