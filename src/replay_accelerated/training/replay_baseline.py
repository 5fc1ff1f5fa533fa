"""RePlay's own SASRec and BERT4Rec trained on our splits: the baseline rows of every benchmark.

A speed-up or a metric gain of our models only means something next to the library we
re-implement, run on exactly the same data. This module trains RePlay 0.22's models the way
its own examples do, through its own data classes, and returns what our training records
(epoch times, epochs run, best validation NDCG@10, peak memory) plus top-k test
recommendations in original ids, so that our `metric_table` scores both the same way.
Two APIs (`model.implementation`):

- "replay": `replay.models.nn.sequential.Bert4Rec` / `SasRec`, deprecated in 0.22 but the API
  of the reference project (its deprecation warnings are muted while it runs):
      splits (pandas) -> replay.data.Dataset -> SequenceTokenizer -> SequentialDataset
          -> Bert4Rec*/SasRec*Dataset -> DataLoader -> lightning.Trainer(Bert4Rec | SasRec)
- "replay_nn": the newer `replay.nn.sequential.SasRec` (no BERT4Rec there), what a new user starts
  with; its data path is parquet files read batch by batch:
      splits -> replay.preprocessing.LabelEncodingRule -> groupby_sequences -> parquet files
          -> replay.data.nn.ParquetModule (make_default_sasrec_transforms)
          -> lightning.Trainer(replay.nn.lightning.LightningModule(SasRec.from_params(...)))
  with replay.nn's callbacks (ComputeMetricsCallback, TorchTopItemsCallback) and SeenItemsFilter.
  ParquetModule reads in the training process (no loader workers: `num_workers` is not used).
  With item features (dataset.item_features, data/item_features.py) each event also carries its item's
  feature codes and numbers, in our encoding: one sequence column per feature (a list feature as a list
  of lists), declared in the TensorSchema as CATEGORICAL, CATEGORICAL_LIST (padding: the cardinality) or
  NUMERICAL (tensor_dim 1, padding 0.0); SasRec.from_params sums their embeddings with the item's
  (SumAggregator) and its head scores item ids only: our `item_feature_head: id_only`.

Both train through the same loop (`_train`): early stopping and the best checkpoint on
validation NDCG@10, the same measurements and recommendations.

Same data as ours:
- items: the vocabulary is fitted on train_events + validation_events, the vocabulary of
  our `ItemVocabulary.fit`;
- training: train_events; validation: validation_events -> validation_gt, NDCG@10
  after removing each user's seen items (RePlay's `RemoveSeenItems` / `SeenItemsFilter`), as ours;
- test: the users of both test_events and test_gt (our `EvaluationUsers.from_splits`),
  their test_events as history, seen items removed.

RePlay's conventions that matter here (read from replay 0.22's source):
- its validation callbacks log metrics as plain "ndcg@10" (no "val_" prefix);
- sequences are left-padded (the deprecated API with the padding value 0, itself a real item id,
  told apart by a padding mask; replay.nn with the item cardinality, its embedding's padding row);
  only the last `max_seq_len` events of each user are used, one training sample per user (no
  sliding window);
- BERT4Rec predicts by appending a [MASK] token, so it reads only the last
  `max_seq_len - 1` events;
- the optimizer is Adam with betas (0.9, 0.98), from RePlay's `FatOptimizerFactory` (replay.nn:
  `OptimizerFactory`, the same defaults).
"""

import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from replay.data import Dataset, FeatureHint, FeatureInfo, FeatureSchema, FeatureSource, FeatureType
from replay.data.nn import (ParquetModule, SequenceTokenizer, SequentialDataset, TensorFeatureInfo,
                            TensorFeatureSource, TensorSchema)
from replay.data.nn.utils import groupby_sequences
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
from replay.nn.lightning import LightningModule
from replay.nn.lightning.callback import ComputeMetricsCallback, TorchTopItemsCallback
from replay.nn.lightning.optimizer import OptimizerFactory
from replay.nn.lightning.postprocessor import SeenItemsFilter
from replay.nn.loss import BCESampled, CESampled
from replay.nn.sequential import SasRec as NnSasRec
from replay.nn.transform import UniformNegativeSamplingTransform
from replay.nn.transform.template import make_default_sasrec_transforms
from replay.preprocessing.label_encoder import LabelEncodingRule
from torch.utils.data import DataLoader

from replay_accelerated.data.formats import ITEM, TIMESTAMP, USER
from replay_accelerated.data.item_features import ItemFeatures
from replay_accelerated.data.sequences import ItemVocabulary
from replay_accelerated.data.split import Splits
from replay_accelerated.models.replay_import import read_replay_checkpoint
from replay_accelerated.training.checkpoints import KeepSigtermHandler
from replay_accelerated.training.flops import EpochShapes, sum_shapes
from replay_accelerated.training.measurements import (
    EpochTimer,
    StepTimer,
    TrainingMemory,
    data_preparation_share,
    timed_steps_trainer_args,
)

ITEM_SEQUENCE = "item_id_seq"  # the tensor feature RePlay's models read: each user's item sequence
MONITOR = "ndcg@10"  # the name RePlay's validation callbacks log NDCG@10 under
SCORE = "score"
QUERY, GROUND_TRUTH, SEEN = "query_id", "ground_truth", "seen_ids"  # replay.nn's batch keys (its callbacks' defaults)

# What each model needs from RePlay's deprecated API: its module and its three torch datasets.
REPLAY_MODELS = {
    "bert4rec": (Bert4Rec, Bert4RecTrainingDataset, Bert4RecValidationDataset, Bert4RecPredictionDataset),
    "sasrec": (SasRec, SasRecTrainingDataset, SasRecValidationDataset, SasRecPredictionDataset),
}
REAL_TOKENS = {"bert4rec": "pad_mask", "sasrec": "padding_mask"}  # a training batch's [B, W] "is an item" mask
# What each RePlay API (model.implementation) can train, per model, in our names (`replay_loss` and
# `_nn_loss` map them to RePlay's); validation.py refuses anything else, and a model an API does not have.
# Their precisions are training/precision.REPLAY_PRECISIONS, beside the one precision decision that honours them.
LOSS_TYPES = {
    "replay": {"bert4rec": ("CE", "CE_restricted", "CE_sampled", "BCE"), "sasrec": ("CE", "CE_sampled", "BCE")},
    "replay_nn": {"sasrec": ("CE", "CE_sampled", "BCE")},
}
SAMPLING_STRATEGIES = (None, "uniform")  # RePlay's "global_uniform"


@dataclass
class Pipeline:
    """What one RePlay API brings to the shared training loop (`_train`): its module, data and callbacks."""

    module: L.LightningModule
    fit_data: dict  # trainer.fit's data arguments: loaders, or a datamodule
    samples_per_epoch: int
    batches_per_epoch: int
    validation_metrics: L.Callback  # logs MONITOR after each validation
    shapes: EpochShapes  # what an epoch computes on (training/flops.py)
    real_tokens: str  # the key of a training batch's [B, W] "is an item" mask, as the module receives it
    training_batches: Callable[[], Iterator]  # one pass of raw training batches, as the loader gives them
    prepare: Callable[[Any, torch.device], Any]  # a raw batch -> what the module trains on, on the device
    loss: Callable[[Any], torch.Tensor]  # a prepared batch -> the training loss
    recommend: Callable[[pd.DataFrame, pd.DataFrame, int], pd.DataFrame]  # (history, ground truth, k) -> top-k
    item_count: int


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
    implementation: str = "replay",
    item_features: ItemFeatures | None = None,
    vocabulary: ItemVocabulary | None = None,
) -> dict:
    """Train RePlay's `model_name` ("bert4rec" or "sasrec") on `splits`; recommend top-max(ks) to test users.

    `implementation`: RePlay's API, "replay" (replay.models.nn, deprecated) or "replay_nn" (replay.nn,
    SASRec only). `model_params` and `training_params` are the `model.params.*` configs (or anything with
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
    recommendations. `item_features` (with the `vocabulary` their rows follow): replay.nn only.
    """
    if item_features is not None and implementation != "replay_nn":
        raise ValueError("item features train with RePlay's replay.nn SasRec only (implementation='replay_nn')")
    if model_name not in LOSS_TYPES.get(implementation, {}):
        raise ValueError(f"RePlay's API '{implementation}' has no model '{model_name}'; expected one of "
                         f"{ {api: list(models) for api, models in LOSS_TYPES.items()} }")
    placement = _placement(trainer, training_params)
    with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="replay_baseline_") as workdir:
        # replay 0.22 warns on every object of its deprecated API, and ParquetModule on the stages a run does not
        # use; the warnings say nothing about the run.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="The following dataset paths aren't provided")
        L.seed_everything(seed, workers=True, verbose=False)
        if implementation == "replay":
            pipeline = _models_pipeline(model_name, splits, model_params, training_params, placement)
        else:
            pipeline = _nn_pipeline(splits, model_params, training_params, placement, Path(workdir), item_features,
                                    vocabulary)
        if steps is not None:
            return _time_steps(pipeline, placement, steps, warmup_steps)
        return _train(pipeline, splits, model_params.max_seq_len, training_params, ks, placement, max_epochs,
                      Path(workdir))


def _train(pipeline: Pipeline, splits: Splits, max_seq_len: int, training_params: Any, ks: list[int],
           placement: dict, max_epochs: int | None, workdir: Path) -> dict:
    """Train as our models do: early stopping and the best checkpoint on validation NDCG@10; then recommend."""
    module = pipeline.module
    timer = EpochTimer(samples_per_epoch=pipeline.samples_per_epoch, metrics={"ndcg@10": MONITOR})
    checkpoint = ModelCheckpoint(dirpath=workdir / "checkpoints", filename="best", monitor=MONITOR, mode="max",
                                 save_top_k=1, enable_version_counter=False)
    trainer = L.Trainer(
        max_epochs=max_epochs if max_epochs is not None else training_params.max_epochs,
        **placement,
        callbacks=[pipeline.validation_metrics,  # logs "ndcg@10", which the next two watch
                   EarlyStopping(monitor=MONITOR, mode="max", patience=training_params.patience),
                   checkpoint, timer, KeepSigtermHandler()],
        num_sanity_val_steps=0,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    device = trainer.strategy.root_device
    memory = TrainingMemory(device)
    trainer.fit(module, **pipeline.fit_data)
    memory_used = memory.summary()

    module.to(device).train()
    prep_share = data_preparation_share(pipeline.training_batches(), lambda batch: pipeline.prepare(batch, device),
                                        lambda batch: pipeline.loss(batch).backward(), device)
    module.zero_grad(set_to_none=True)
    # The checkpoint pickles RePlay's hyper-parameters (tensor schema, factories): read with those classes allowed.
    module.load_state_dict(read_replay_checkpoint(Path(checkpoint.best_model_path))["state_dict"])

    # Top-k unseen items for the validation and test users, in original ids.
    k = min(max(ks), pipeline.item_count)  # RePlay's top-k needs k <= the catalog size
    recommendations = {
        split: pipeline.recommend(events, ground_truth, k)
        for split, events, ground_truth in (("validation", splits.validation_events, splits.validation_gt),
                                            ("test", splits.test_events, splits.test_gt))}
    # RePlay pads every sequence to max_seq_len.
    lengths = np.minimum(np.bincount(pd.factorize(splits.train_events[USER])[0]), max_seq_len)
    return {
        "best_validation_ndcg@10": float(checkpoint.best_model_score),
        "epochs_run": trainer.current_epoch,
        **timer.summary(),
        **memory_used,
        "data_preparation_share": round(prep_share, 4),
        "padding_share": round(1.0 - lengths.sum() / (len(lengths) * max_seq_len), 4),
        "epoch_shapes": pipeline.shapes.as_dict(),
        "recommendations": recommendations,
    }


def _time_steps(pipeline: Pipeline, placement: dict, steps: int, warmup_steps: int) -> dict:
    """The steps mode: time `steps` training steps of RePlay's module after `warmup_steps`."""
    real_tokens = pipeline.real_tokens
    step_timer = StepTimer(warmup_steps, steps, batches_per_epoch=pipeline.batches_per_epoch,
                           count=lambda batch: (len(batch[real_tokens]), batch[real_tokens].sum()))
    trainer = L.Trainer(**timed_steps_trainer_args(steps, warmup_steps, pipeline.batches_per_epoch), **placement,
                        callbacks=[step_timer], enable_progress_bar=False, enable_model_summary=False, logger=False)
    memory = TrainingMemory(trainer.strategy.root_device)
    trainer.fit(pipeline.module, **pipeline.fit_data)
    return {**step_timer.summary(), **memory.summary(), "epoch_shapes": pipeline.shapes.as_dict()}


# The deprecated API: replay.models.nn.sequential.


def _models_pipeline(model_name: str, splits: Splits, model_params: Any, training_params: Any,
                     placement: dict) -> Pipeline:
    module_class, training_class, validation_class, prediction_class = REPLAY_MODELS[model_name]
    max_seq_len = model_params.max_seq_len

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

    def real_and_targets(batch: dict) -> tuple[torch.Tensor, int]:
        real_mask = batch[REAL_TOKENS[model_name]]
        if model_name == "bert4rec":  # target: a masked real token
            target_mask = real_mask & ~batch["token_mask"]
        else:  # target: a real next item
            target_mask = batch["target_padding_mask"]
        return real_mask, real_mask.numel() if _head_at_every_position(model_params) else int(target_mask.sum())

    def recommend(events: pd.DataFrame, ground_truth: pd.DataFrame, k: int) -> pd.DataFrame:
        """RePlay's prediction loop: scores over the catalog, seen items removed, top-k per user."""
        history = tokenizer.transform(_replay_dataset(_evaluated(events, ground_truth)))
        prediction = TorchPredictionCallback(top_k=k, postprocessors=[RemoveSeenItems(history)])
        loader = DataLoader(prediction_class(history, max_sequence_length=max_seq_len),
                            batch_size=training_params.batch_size)
        _predict(module, prediction, placement, loader)
        return _top_k_frame(*prediction.get_result(), tokenizer.query_id_encoder.inverse_mapping[USER],
                            tokenizer.item_id_encoder.inverse_mapping[ITEM])

    return Pipeline(
        module=module, fit_data={"train_dataloaders": train_loader, "val_dataloaders": validation_loader},
        samples_per_epoch=len(training_data), batches_per_epoch=len(train_loader),
        validation_metrics=ValidationMetricsCallback(metrics=["ndcg"], ks=[10], item_count=item_count,
                                                     postprocessors=[RemoveSeenItems(validation)]),
        shapes=sum_shapes(map(real_and_targets, train_loader)), real_tokens=REAL_TOKENS[model_name],
        training_batches=lambda: iter(train_loader), prepare=move_data_to_device,
        loss=module._compute_loss,  # training_step without its self.log (needs the fit loop)
        recommend=recommend, item_count=item_count)


def _feature_schema() -> FeatureSchema:
    """Which columns of our frames are the user, the item and the event order."""
    return FeatureSchema([
        FeatureInfo(column=USER, feature_type=FeatureType.CATEGORICAL, feature_hint=FeatureHint.QUERY_ID),
        FeatureInfo(column=ITEM, feature_type=FeatureType.CATEGORICAL, feature_hint=FeatureHint.ITEM_ID),
        FeatureInfo(column=TIMESTAMP, feature_type=FeatureType.NUMERICAL, feature_hint=FeatureHint.TIMESTAMP),
    ])


def _in_our_order(events: pd.DataFrame) -> pd.DataFrame:
    """User, item and a timestamp that is the row position: RePlay sorts each user's events by (timestamp, item
    index), which would reorder events with equal timestamps (frequent in MovieLens). Our frames are already
    time-ordered per user, so the row position keeps our sequences unchanged."""
    return pd.DataFrame({
        USER: events[USER].to_numpy(),
        ITEM: events[ITEM].to_numpy(),
        TIMESTAMP: np.arange(len(events), dtype=np.int64),
    })


def _replay_dataset(events: pd.DataFrame) -> Dataset:
    """Our events as a `replay.data.Dataset`, keeping our order of events exactly (`_in_our_order`)."""
    # A fresh FeatureSchema per Dataset: a Dataset binds its FeatureInfo objects to its own frame.
    return Dataset(feature_schema=_feature_schema(), interactions=_in_our_order(events))


def _tensor_schema(hidden_size: int, **item_info) -> TensorSchema:
    """The single input feature of both models: the sequence of item ids, embedded in hidden_size.
    `item_info`: more of its TensorFeatureInfo (replay.nn: cardinality and padding_value)."""
    return TensorSchema(
        TensorFeatureInfo(
            name=ITEM_SEQUENCE,
            feature_type=FeatureType.CATEGORICAL,
            is_seq=True,
            feature_hint=FeatureHint.ITEM_ID,
            feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, ITEM)],
            embedding_dim=hidden_size,  # the models add item and position embeddings of this size
            **item_info,
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


# The newer API: replay.nn.


def _nn_pipeline(splits: Splits, model_params: Any, training_params: Any, placement: dict, workdir: Path,
                 item_features: ItemFeatures | None = None, vocabulary: ItemVocabulary | None = None) -> Pipeline:
    max_seq_len = model_params.max_seq_len

    # 1. RePlay's label encoders: user and item ids -> contiguous indices. Items a history holds that
    # training does not know are dropped (`_models_pipeline` says why).
    known = pd.concat([splits.train_events, splits.validation_events])
    items = LabelEncodingRule(ITEM, handle_unknown="drop").fit(known)
    users = LabelEncodingRule(USER).fit(pd.concat([known, splits.test_events])[[USER]])
    item_count = len(items.get_mapping())
    schema = _tensor_schema(model_params.hidden_size, cardinality=item_count, padding_value=item_count)
    features = {} if item_features is None else _event_features(item_features, vocabulary, items)
    if features:
        schema = TensorSchema([schema[ITEM_SEQUENCE], *(_feature_info(name, kind, cardinality, model_params.hidden_size)
                                                       for name, (kind, cardinality, _, _) in features.items())])

    def sequences(events: pd.DataFrame, column: str = ITEM_SEQUENCE) -> pd.DataFrame:
        """Each user's items in our order: (query_id, `column` [list of item indices]), by query_id; the item
        sequences with their features' sequences (a column per feature)."""
        encoded = users.transform(items.transform(_in_our_order(events)))
        if column == ITEM_SEQUENCE:
            for name, (_, _, values, _) in features.items():
                encoded[name] = [values[item] for item in encoded[ITEM].to_numpy()]
        grouped = groupby_sequences(encoded, groupby_col=USER, sort_col=TIMESTAMP)
        frame = pd.DataFrame({QUERY: grouped[USER].to_numpy(), column: grouped[ITEM].to_numpy()})
        for name, (kind, _, _, _) in features.items() if column == ITEM_SEQUENCE else ():
            # numbers as float32 (the model's dtype: parquet would keep Python's float64)
            frame[name] = [np.asarray(values, dtype=np.float32) for values in grouped[name]] \
                if kind == "numerical" else grouped[name].to_numpy()
        return frame

    # 2. Parquet files, one row per user, and RePlay's ParquetModule over them.
    train = sequences(splits.train_events)
    validation = _histories(sequences, splits.validation_events, splits.validation_gt, with_truth=True)
    train_path = _parquet(train, workdir / "train.parquet")
    validation_path = _parquet(validation, workdir / "validation.parquet")
    transforms = make_default_sasrec_transforms(schema)
    loss = _nn_loss(model_params, item_count, transforms["train"])
    metadata = {"train": _metadata(train, max_seq_len + 1, item_count, features),  # the input and its next items
                "validate": _metadata(validation, max_seq_len, item_count, features)}
    device = _data_device(placement)
    data = ParquetModule(training_params.batch_size, metadata, transforms,
                         # RePlay's default: shuffled by torch's generator (seeded), on the device trained on
                         config={"train": {"generator": torch.default_generator, "device": device},
                                 "validate": {"device": device}},
                         train_path=str(train_path), validate_path=str(validation_path))
    data.setup("fit")

    # 3. RePlay's model, with our hyperparameters, in its LightningModule.
    model = NnSasRec.from_params(schema, embedding_dim=model_params.hidden_size, num_heads=model_params.head_count,
                                 num_blocks=model_params.block_count, max_sequence_length=max_seq_len,
                                 dropout=model_params.dropout_rate)
    if loss is not None:
        model = NnSasRec(body=model.body, loss=loss)
    module = LightningModule(model, optimizer_factory=OptimizerFactory(learning_rate=training_params.learning_rate,
                                                                       weight_decay=training_params.weight_decay))
    train_transform = data.compiled_transforms["train"]

    def real_and_targets(batch: dict) -> tuple[torch.Tensor, int]:
        batch = train_transform(batch)
        real_mask, target_mask = batch["padding_mask"], batch["target_padding_mask"]
        return real_mask, real_mask.numel() if _head_at_every_position(model_params) else int(target_mask.sum())

    def recommend(events: pd.DataFrame, ground_truth: pd.DataFrame, k: int) -> pd.DataFrame:
        """replay.nn's prediction: scores over the catalog, seen items removed, top-k per user."""
        history = _histories(sequences, events, ground_truth)
        path = _parquet(history, workdir / "predict.parquet")
        predict = ParquetModule(training_params.batch_size,
                                {"predict": _metadata(history, max_seq_len, item_count, features)},
                                transforms, config={"predict": {"device": device}}, predict_path=str(path))
        prediction = TorchTopItemsCallback(top_k=k, query_column=QUERY,
                                           postprocessors=[SeenItemsFilter(item_count, SEEN)])
        _predict(module, prediction, placement, datamodule=predict)
        return _top_k_frame(*prediction.get_result(), users.get_inverse_mapping(), items.get_inverse_mapping())

    return Pipeline(
        module=module, fit_data={"datamodule": data}, samples_per_epoch=len(train),
        batches_per_epoch=len(data.train_dataloader()),
        validation_metrics=ComputeMetricsCallback(metrics=["ndcg"], ks=[10], item_count=item_count,
                                                  postprocessors=[SeenItemsFilter(item_count, SEEN)], verbose=False),
        shapes=sum_shapes(map(real_and_targets, data.train_dataloader())), real_tokens="padding_mask",
        training_batches=lambda: iter(data.train_dataloader()),
        prepare=lambda batch, device: train_transform(move_data_to_device(batch, device)),
        loss=lambda batch: module(batch)["loss"], recommend=recommend, item_count=item_count)


def _nn_loss(model_params: Any, item_count: int, train_transforms: list) -> torch.nn.Module | None:
    """replay.nn's loss for our loss settings, read as the deprecated API reads them (`replay_loss`): None for
    the full CE (SasRec.from_params' own, the softmax at every position), else CESampled / BCESampled on
    `loss_sample_count` uniform negatives per batch (RePlay's sampler transform, appended to `train_transforms`)."""
    loss = replay_loss(model_params)
    if loss["loss_sample_count"] is None:
        return None
    train_transforms.append(UniformNegativeSamplingTransform(item_count, loss["loss_sample_count"]))
    return CESampled(ignore_index=item_count) if loss["loss_type"] == "CE" else BCESampled()


def _histories(sequences: Callable[..., pd.DataFrame], events: pd.DataFrame, ground_truth: pd.DataFrame,
               with_truth: bool = False) -> pd.DataFrame:
    """The evaluated users' (`_evaluated`) history and their seen items (the whole history, as RePlay's
    RemoveSeenItems: replay.nn's SeenItemsFilter reads them), by query_id; `with_truth`: and their ground truth,
    only users with a known item there (RePlay's recipe for validation, `keep_common_query_ids`)."""
    history = sequences(_evaluated(events, ground_truth))
    history[SEEN] = history[ITEM_SEQUENCE].map(np.unique)
    if not with_truth:
        return history
    return history.merge(sequences(ground_truth[ground_truth[USER].isin(events[USER])], GROUND_TRUTH), on=QUERY)


def _event_features(item_features: ItemFeatures, vocabulary: ItemVocabulary, items: LabelEncodingRule) -> dict:
    """name -> (type, cardinality, the value of each of RePlay's item indices, the longest list): our codes (a
    list of codes without padding for a list feature) and numbers, by RePlay's item index."""
    replay_ids = pd.Series(items.get_inverse_mapping()).sort_index()  # RePlay's item index -> original id
    ours = vocabulary.encode(replay_ids)  # -> our item index
    features = {}
    for name, kind in item_features.kinds.items():
        if kind == "numerical":
            features[name] = (kind, None, item_features.numbers[name][ours].tolist(), 1)
            continue
        cardinality = len(item_features.values[name])
        codes = item_features.codes[name][ours]
        if kind == "categorical":
            features[name] = (kind, cardinality, codes.tolist(), 1)
        else:
            lists = [row[row != cardinality].tolist() for row in codes]
            features[name] = (kind, cardinality, lists, max(1, max(map(len, lists))))
    return features


def _feature_info(name: str, kind: str, cardinality: int | None, hidden_size: int) -> TensorFeatureInfo:
    """The TensorFeatureInfo of one item feature's sequence, embedded in hidden_size (summed with the item's)."""
    types = {"categorical": FeatureType.CATEGORICAL, "categorical_list": FeatureType.CATEGORICAL_LIST,
             "numerical": FeatureType.NUMERICAL}
    size = {"tensor_dim": 1} if kind == "numerical" else {"cardinality": cardinality, "padding_value": cardinality}
    return TensorFeatureInfo(name=name, feature_type=types[kind], is_seq=True, embedding_dim=hidden_size,
                             feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, name)], **size)


def _parquet(frame: pd.DataFrame, path: Path) -> Path:
    frame.to_parquet(path, index=False)
    return path


def _metadata(frame: pd.DataFrame, width: int, padding: int, features: dict | None = None) -> dict:
    """ParquetModule's columns: the item sequence left-padded to `width` with `padding` (longer ones keep their
    newest items), each feature's sequence alike (`_event_features`; a list feature also padded to its longest
    list), and the evaluation columns whole, padded with -1 (not an item: RePlay ignores it)."""
    metadata = {QUERY: {}, ITEM_SEQUENCE: {"shape": width, "padding": padding}}
    for name, (kind, cardinality, _, longest) in (features or {}).items():
        metadata[name] = {"shape": [width, longest] if kind == "categorical_list" else width,
                          "padding": 0.0 if kind == "numerical" else cardinality}
    for column in (SEEN, GROUND_TRUTH):
        if column in frame:
            metadata[column] = {"shape": max(1, int(frame[column].map(len).max())), "padding": -1}
    return metadata


def _data_device(placement: dict) -> torch.device:
    """Where ParquetModule makes its batches: a GPU where the run trains on one (its default), else the CPU."""
    on_gpu = torch.cuda.is_available() and placement.get("accelerator", "auto") in ("auto", "gpu", "cuda")
    return torch.device("cuda" if on_gpu else "cpu")


# What both APIs share around the loop.


def _placement(trainer_params: Any, training_params: Any) -> dict:
    """Lightning Trainer arguments: device and precision as our model gets them (one device: see validation.py)."""
    precision = str(training_params.precision or "32-true")
    if trainer_params is None:
        return {"precision": precision}
    devices = 1 if str(trainer_params.devices) == "auto" else trainer_params.devices
    return {"accelerator": trainer_params.accelerator, "devices": devices, "precision": precision}


def _evaluated(events: pd.DataFrame, ground_truth: pd.DataFrame) -> pd.DataFrame:
    """The events of the users our evaluation scores: those with both a history and a ground truth."""
    users = np.intersect1d(events[USER].unique(), ground_truth[USER].unique())
    return events[events[USER].isin(users)]


def _predict(module: L.LightningModule, prediction: L.Callback, placement: dict, loader: Any = None,
             datamodule: Any = None) -> None:
    predictor = L.Trainer(callbacks=[prediction], **placement, enable_progress_bar=False,
                          enable_model_summary=False, logger=False)
    predictor.predict(module.eval(), loader, datamodule=datamodule, return_predictions=False)


def _top_k_frame(query_ids: torch.Tensor, item_ids: torch.Tensor, scores: torch.Tensor, to_user: Any,
                 to_item: Any) -> pd.DataFrame:
    """RePlay's top-k ([U], [U, k], [U, k] in its indices) as (user_id, item_id, score, rank) in original ids;
    `to_user` / `to_item` map its indices back."""
    n_users, n_top = item_ids.shape
    scores_np = scores.float().numpy().ravel()  # bf16 scores under bf16-mixed; numpy has no bfloat16
    found = np.isfinite(scores_np)  # seen items score -inf; a user may have < k unseen
    users = np.array([to_user[index] for index in query_ids.numpy()])
    items = np.array([to_item[index] for index in item_ids.numpy().ravel()])
    return pd.DataFrame({
        USER: np.repeat(users, n_top)[found],
        ITEM: items[found],
        SCORE: scores_np[found],
        "rank": np.tile(np.arange(1, n_top + 1), n_users)[found],
    }).sort_values([USER, "rank"], ignore_index=True)
