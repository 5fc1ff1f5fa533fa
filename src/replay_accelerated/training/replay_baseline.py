"""RePlay's own SASRec and BERT4Rec trained on our splits: the baseline row of every benchmark.

A speed-up or a metric gain of our models only means something next to the library we
re-implement, run on exactly the same data. This module trains RePlay 0.22's
`replay.models.nn.sequential.Bert4Rec` / `SasRec` Lightning modules the way RePlay's
own example notebooks do, through RePlay's own data classes, and returns what our
training records (epoch times, epochs run, best validation NDCG@10, peak memory) plus
top-k test recommendations in original ids, so that our `metric_table` scores both
the same way:

    splits (pandas) -> replay.data.Dataset -> SequenceTokenizer -> SequentialDataset
        -> Bert4Rec*/SasRec*Dataset -> DataLoader -> lightning.Trainer(Bert4Rec | SasRec)

Same data as ours:
- items: the tokenizer is fitted on train_events + validation_events, the vocabulary
  of our `ItemVocabulary.fit`;
- training: train_events; validation: validation_events -> validation_gt, NDCG@10
  after removing each user's seen items (RePlay's `RemoveSeenItems`), as ours;
- test: the users of both test_events and test_gt (our `EvaluationUsers.from_splits`),
  their test_events as history, seen items removed.

RePlay's conventions that matter here (read from replay 0.22's source):
- its validation callback logs metrics as plain "ndcg@10" (no "val_" prefix);
- sequences are left-padded with the padding value 0, itself a real item id, and are
  told apart by a padding mask; only the last `max_seq_len` events of each user are
  used, one training sample per user (no sliding window);
- BERT4Rec predicts by appending a [MASK] token, so it reads only the last
  `max_seq_len - 1` events;
- the optimizer is Adam with betas (0.9, 0.98), from RePlay's `FatOptimizerFactory`.

The `replay.models.nn.sequential` API is deprecated in replay 0.22 in favour of
`replay.nn`; it is still the API of the reference project, so its deprecation warnings
are muted while the baseline runs.
"""

import tempfile
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from replay.data import Dataset, FeatureHint, FeatureInfo, FeatureSchema, FeatureSource, FeatureType
from replay.data.nn import SequenceTokenizer, SequentialDataset, TensorFeatureInfo, TensorFeatureSource, TensorSchema
from replay.models.nn.optimizer_utils import FatOptimizerFactory
from replay.models.nn.sequential import Bert4Rec, SasRec
from replay.models.nn.sequential.bert4rec import (
    Bert4RecPredictionDataset,
    Bert4RecTrainingDataset,
    Bert4RecValidationDataset,
)
from replay.models.nn.sequential.callbacks import TorchPredictionCallback, ValidationMetricsCallback
from replay.models.nn.sequential.postprocessors import RemoveSeenItems
from replay.models.nn.sequential.sasrec import SasRecPredictionDataset, SasRecTrainingDataset, SasRecValidationDataset
from torch.utils.data import DataLoader

from replay_accelerated.training.flops import EpochShapes, sum_shapes

from replay_accelerated.data.formats import ITEM, TIMESTAMP, USER
from replay_accelerated.data.split import Splits
from replay_accelerated.models.replay_import import read_replay_checkpoint
from replay_accelerated.training.measurements import (
    EpochTimer,
    StepTimer,
    TrainingMemory,
    data_preparation_share,
    timed_steps_trainer_args,
)

ITEM_SEQUENCE = "item_id_seq"  # the tensor feature RePlay's models read: each user's item sequence
MONITOR = "ndcg@10"  # the name RePlay's ValidationMetricsCallback logs NDCG@10 under
SCORE = "score"

# What each model needs from RePlay: its module and its three torch datasets.
REPLAY_MODELS = {
    "bert4rec": (Bert4Rec, Bert4RecTrainingDataset, Bert4RecValidationDataset, Bert4RecPredictionDataset),
    "sasrec": (SasRec, SasRecTrainingDataset, SasRecValidationDataset, SasRecPredictionDataset),
}
REAL_TOKENS = {"bert4rec": "pad_mask", "sasrec": "padding_mask"}  # a training batch's [B, W] "is an item" mask
# What RePlay's models can train with, in our names (`replay_loss` maps them to RePlay's); validation.py
# refuses anything else with model.implementation=replay.
LOSS_TYPES = {"bert4rec": ("CE", "CE_restricted", "CE_sampled", "BCE"), "sasrec": ("CE", "CE_sampled", "BCE")}
PRECISIONS = ("auto", None, "32", "32-true", "bf16-mixed")
SAMPLING_STRATEGIES = (None, "uniform")  # RePlay's "global_uniform"


def train_replay_baseline(
    model_name: str,
    splits: Splits,
    model_params: Any,
    training_params: Any,
    ks: list[int],
    seed: int,
    max_epochs: int | None = None,
    trainer: Any = None,
    steps: int | None = None,
    warmup_steps: int = 0,
) -> dict:
    """Train RePlay's `model_name` ("bert4rec" or "sasrec") on `splits`; recommend top-max(ks) to test users.

    `model_params` and `training_params` are the `model.params.*` configs (or anything with
    the same attributes); `max_epochs` overrides `training_params.max_epochs`. The loss
    (`replay_loss`) and `training_params.precision` are RePlay's, in training and prediction;
    `trainer` (the `trainer` config: accelerator, devices) places it as our model is placed.
    Returns what our training records (`training/fit.py`): epoch times and samples/s,
    validation history, `epochs_run`, `best_validation_ndcg@10`, `peak_memory_mb`,
    `data_preparation_share`, `padding_share`, `epoch_shapes` (what the head and blocks compute on,
    for training/flops.py), and the best model's `recommendations`
    {"validation" | "test": (user_id, item_id, score, rank) in original ids}.
    On a CPU, `peak_memory_mb` is the whole process's peak resident memory so far; `training_memory_mb`
    what training added (training/measurements.TrainingMemory). With `steps`, only `steps` training
    steps after `warmup_steps` are timed (training/measurements.StepTimer): no validation, checkpoint or
    recommendations.
    """
    if model_name not in REPLAY_MODELS:
        raise ValueError(f"unknown model '{model_name}'; expected one of {list(REPLAY_MODELS)}")
    with warnings.catch_warnings():
        # replay 0.22 warns on every object of this deprecated API; the warnings say nothing about the run.
        warnings.simplefilter("ignore", DeprecationWarning)
        return _train(model_name, splits, model_params, training_params, ks, seed, max_epochs, trainer, steps,
                      warmup_steps)


def _train(model_name: str, splits: Splits, model_params: Any, training_params: Any, ks: list[int], seed: int,
           max_epochs: int | None, trainer_params: Any, steps: int | None, warmup_steps: int) -> dict:
    module_class, training_class, validation_class, prediction_class = REPLAY_MODELS[model_name]
    max_seq_len = model_params.max_seq_len
    L.seed_everything(seed, workers=True, verbose=False)

    # 1. RePlay's tokenizer: item and user ids -> contiguous indices, events -> sequences.
    # Items a history holds that training does not know are dropped, the rule of our models and mode=infer
    # (RePlay's default, "error", stops on them: leave-one-out test histories hold validation targets).
    tokenizer = SequenceTokenizer(_tensor_schema(model_params.hidden_size), handle_unknown_rule="drop")
    tokenizer.fit(_replay_dataset(pd.concat([splits.train_events, splits.validation_events])))
    item_count = tokenizer.tensor_schema.item_id_features.item().cardinality
    train = tokenizer.transform(_replay_dataset(splits.train_events))
    # Only users with both a history and a ground truth can be validated (RePlay's own recipe).
    validation, validation_gt = SequentialDataset.keep_common_query_ids(
        tokenizer.transform(_replay_dataset(splits.validation_events)),
        tokenizer.transform(_replay_dataset(splits.validation_gt)),
    )

    # 2. RePlay's torch datasets and our loaders over them.
    if model_name == "bert4rec":
        training_data = training_class(train, max_sequence_length=max_seq_len, mask_prob=model_params.mask_prob)
    else:
        training_data = training_class(train, max_sequence_length=max_seq_len)
    # `train` is what RePlay's validation passes for coverage/novelty; our validation users are
    # cold (absent from train_events), so the items they have seen are their validation_events,
    # and those are what RemoveSeenItems(validation) removes below.
    validation_data = validation_class(validation, validation_gt, train, max_sequence_length=max_seq_len)
    workers = training_params.num_workers
    loader_options = dict(batch_size=training_params.batch_size, num_workers=workers, persistent_workers=workers > 0)
    train_loader = DataLoader(training_data, shuffle=True, **loader_options)
    validation_loader = DataLoader(validation_data, shuffle=False, **loader_options)

    # 3. RePlay's Lightning module with the configured loss, our hyperparameters.
    module = _build_module(module_class, tokenizer.tensor_schema, model_params, training_params)
    placement = _placement(trainer_params, training_params)

    # 4. Train as our models do: early stopping and best checkpoint on validation NDCG@10.
    timer = EpochTimer(samples_per_epoch=len(training_data), metrics={"ndcg@10": MONITOR})
    validation_metrics = ValidationMetricsCallback(
        metrics=["ndcg"], ks=[10], item_count=item_count, postprocessors=[RemoveSeenItems(validation)]
    )
    shapes = _epoch_shapes(model_name, train_loader, _head_at_every_position(model_params))
    if steps is not None:
        return _time_steps(module, train_loader, placement, steps, warmup_steps, shapes, REAL_TOKENS[model_name])
    with tempfile.TemporaryDirectory(prefix="replay_baseline_") as checkpoint_dir:
        checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=MONITOR, mode="max",
                                     save_top_k=1, enable_version_counter=False)
        trainer = L.Trainer(
            max_epochs=max_epochs if max_epochs is not None else training_params.max_epochs,
            **placement,
            callbacks=[validation_metrics,  # logs "ndcg@10", which the next two watch
                       EarlyStopping(monitor=MONITOR, mode="max", patience=training_params.patience),
                       checkpoint, timer],
            num_sanity_val_steps=0,
            enable_progress_bar=False,
            enable_model_summary=False,
            logger=False,
        )
        device = trainer.strategy.root_device
        memory = TrainingMemory(device)
        trainer.fit(module, train_loader, validation_loader)
        memory_used = memory.summary()

        def step(batch) -> None:
            module._compute_loss(batch).backward()  # training_step without its self.log (needs the fit loop)

        module.to(device).train()
        prep_share = data_preparation_share(iter(train_loader), lambda batch: move_data_to_device(batch, device),
                                            step, device)
        module.zero_grad(set_to_none=True)
        # The checkpoint pickles RePlay's tensor schema in the hyperparameters: read with those classes allowed.
        best = read_replay_checkpoint(Path(checkpoint.best_model_path))
    module.load_state_dict(best["state_dict"])

    # 5. Top-k unseen items for the validation and test users, in original ids.
    recommendations = {
        split: _recommend(module, prediction_class, tokenizer, events, ground_truth, max_seq_len,
                          min(max(ks), item_count),  # RePlay's top-k needs k <= the catalog size
                          training_params.batch_size, placement)
        for split, events, ground_truth in (("validation", splits.validation_events, splits.validation_gt),
                                            ("test", splits.test_events, splits.test_gt))
    }
    # RePlay pads every sequence to max_seq_len.
    lengths = np.minimum(np.bincount(pd.factorize(splits.train_events[USER])[0]), max_seq_len)
    return {
        "best_validation_ndcg@10": float(checkpoint.best_model_score),
        "epochs_run": trainer.current_epoch,
        **timer.summary(),
        **memory_used,
        "data_preparation_share": round(prep_share, 4),
        "padding_share": round(1.0 - lengths.sum() / (len(lengths) * max_seq_len), 4),
        "epoch_shapes": shapes.as_dict(),
        "recommendations": recommendations,
    }


def _time_steps(module: L.LightningModule, train_loader: DataLoader, placement: dict, steps: int,
                warmup_steps: int, shapes: EpochShapes, real_tokens: str) -> dict:
    """The steps mode: time `steps` training steps of RePlay's module after `warmup_steps`;
    `batch[real_tokens]` [B, W] marks the items of a training batch."""
    step_timer = StepTimer(warmup_steps, steps, batches_per_epoch=len(train_loader),
                           count=lambda batch: (len(batch[real_tokens]), batch[real_tokens].sum().item()))
    trainer = L.Trainer(**timed_steps_trainer_args(steps, warmup_steps, len(train_loader)), **placement,
                        callbacks=[step_timer], enable_progress_bar=False, enable_model_summary=False, logger=False)
    memory = TrainingMemory(trainer.strategy.root_device)
    trainer.fit(module, train_loader)
    return {**step_timer.summary(), **memory.summary(), "epoch_shapes": shapes.as_dict()}


def _feature_schema() -> FeatureSchema:
    """Which columns of our frames are the user, the item and the event order."""
    return FeatureSchema([
        FeatureInfo(column=USER, feature_type=FeatureType.CATEGORICAL, feature_hint=FeatureHint.QUERY_ID),
        FeatureInfo(column=ITEM, feature_type=FeatureType.CATEGORICAL, feature_hint=FeatureHint.ITEM_ID),
        FeatureInfo(column=TIMESTAMP, feature_type=FeatureType.NUMERICAL, feature_hint=FeatureHint.TIMESTAMP),
    ])


def _replay_dataset(events: pd.DataFrame) -> Dataset:
    """Our events as a `replay.data.Dataset`, keeping our order of events exactly.

    RePlay sorts each user's events by (timestamp, item index), which would reorder events
    with equal timestamps (frequent in MovieLens). Our frames are already time-ordered per
    user, so the row position replaces the timestamp and RePlay sees our sequences unchanged.
    """
    frame = pd.DataFrame({
        USER: events[USER].to_numpy(),
        ITEM: events[ITEM].to_numpy(),
        TIMESTAMP: np.arange(len(events), dtype=np.int64),
    })
    # A fresh FeatureSchema per Dataset: a Dataset binds its FeatureInfo objects to its own frame.
    return Dataset(feature_schema=_feature_schema(), interactions=frame)


def _tensor_schema(hidden_size: int) -> TensorSchema:
    """The single input feature of both models: the sequence of item ids, embedded in hidden_size."""
    return TensorSchema(
        TensorFeatureInfo(
            name=ITEM_SEQUENCE,
            feature_type=FeatureType.CATEGORICAL,
            is_seq=True,
            feature_hint=FeatureHint.ITEM_ID,
            feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, ITEM)],
            embedding_dim=hidden_size,  # the models add item and position embeddings of this size
        )
    )


def _build_module(module_class: type, tensor_schema: TensorSchema, model_params: Any,
                  training_params: Any) -> L.LightningModule:
    return module_class(
        tensor_schema=tensor_schema,
        block_count=model_params.block_count,
        head_count=model_params.head_count,
        hidden_size=model_params.hidden_size,
        max_seq_len=model_params.max_seq_len,
        dropout_rate=model_params.dropout_rate,
        **replay_loss(model_params),
        optimizer_factory=FatOptimizerFactory(learning_rate=training_params.learning_rate,
                                              weight_decay=training_params.weight_decay),
    )


def replay_loss(model_params: Any) -> dict:
    """Our loss settings as RePlay's `loss_type` and `loss_sample_count` (LOSS_TYPES lists what each model
    supports; config validation rejects the rest).

    CE: the full softmax, which RePlay computes at every position and then keeps the targets';
    CE_restricted (BERT4Rec): the same loss with the head only at the masked positions;
    CE_sampled and BCE: RePlay's sampled CE / BCE with `loss_sample_count` uniform negatives.
    """
    loss_type, sample_count = model_params.loss_type, model_params.loss_sample_count
    if loss_type == "CE_sampled":
        loss_type = "CE"
    elif loss_type == "CE_restricted":
        sample_count = None
    return {"loss_type": loss_type, "loss_sample_count": sample_count}


def _head_at_every_position(model_params: Any) -> bool:
    return replay_loss(model_params) == {"loss_type": "CE", "loss_sample_count": None}


def _placement(trainer_params: Any, training_params: Any) -> dict:
    """Lightning Trainer arguments: device and precision as our model gets them (one device: see validation.py)."""
    precision = str(training_params.precision or "32-true")
    if trainer_params is None:
        return {"precision": precision}
    devices = 1 if str(trainer_params.devices) == "auto" else trainer_params.devices
    return {"accelerator": trainer_params.accelerator, "devices": devices, "precision": precision}


def _epoch_shapes(model_name: str, loader: DataLoader, head_at_every_position: bool) -> EpochShapes:
    """One pass over RePlay's training batches: tokens (all padded to max_seq_len) and where the head runs."""

    def real_and_targets(batch: dict) -> tuple[torch.Tensor, int]:
        real_mask = batch[REAL_TOKENS[model_name]]
        if model_name == "bert4rec":  # target: a masked real token
            target_mask = real_mask & ~batch["token_mask"]
        else:  # target: a real next item
            target_mask = batch["target_padding_mask"]
        return real_mask, real_mask.numel() if head_at_every_position else int(target_mask.sum())

    return sum_shapes(map(real_and_targets, loader))


def _recommend(module: L.LightningModule, prediction_class: type, tokenizer: SequenceTokenizer, events: pd.DataFrame,
               ground_truth: pd.DataFrame, max_seq_len: int, k: int, batch_size: int,
               placement: dict) -> pd.DataFrame:
    """RePlay's prediction loop: scores over the catalog, seen items removed, top-k per user."""
    # The users our evaluation scores: those with both a history and a ground truth.
    users = np.intersect1d(events[USER].unique(), ground_truth[USER].unique())
    history = tokenizer.transform(_replay_dataset(events[events[USER].isin(users)]))
    prediction = TorchPredictionCallback(top_k=k, postprocessors=[RemoveSeenItems(history)])
    predictor = L.Trainer(callbacks=[prediction], **placement, enable_progress_bar=False,
                          enable_model_summary=False, logger=False)
    loader = DataLoader(prediction_class(history, max_sequence_length=max_seq_len), batch_size=batch_size)
    predictor.predict(module.eval(), loader, return_predictions=False)
    query_ids, item_ids, scores = prediction.get_result()  # [U], [U, k], [U, k] in RePlay's indices

    n_users, n_top = item_ids.shape
    scores_np = scores.float().numpy().ravel()  # bf16 scores under bf16-mixed; numpy has no bfloat16
    found = np.isfinite(scores_np)  # RemoveSeenItems gives seen items -inf; a user may have < k unseen
    to_user = tokenizer.query_id_encoder.inverse_mapping[USER]
    to_item = tokenizer.item_id_encoder.inverse_mapping[ITEM]
    users = np.array([to_user[index] for index in query_ids.numpy()])
    items = np.array([to_item[index] for index in item_ids.numpy().ravel()])
    return pd.DataFrame({
        USER: np.repeat(users, n_top)[found],
        ITEM: items[found],
        SCORE: scores_np[found],
        "rank": np.tile(np.arange(1, n_top + 1), n_users)[found],
    }).sort_values([USER, "rank"], ignore_index=True)
