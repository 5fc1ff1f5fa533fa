"""The configuration schema: every key, its type and its default.

Hydra composes `configs/config.yaml` (shipped inside the package, `CONFIG_DIR`) with one file
per group (`dataset/`, `model/`, `mode/`, `acceleration/`, and an optional `experiment/`) and the
command-line overrides; validation.py merges the result into the dataclasses below and checks the
values against the registries of the code.

The keys and defaults are the reference project's (RePlay-Accelerated), so its config
files work unchanged; keys it did not have are marked "ours".
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

# The config files ship inside the package (package data), so an installed wheel finds them as an editable
# install does; users add their own directories with Hydra's `--config-dir`.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# `mode.name`: each is the module of the same name in modes/, exposing run(cfg, origin).
MODES = (
    "train",  # train, evaluate, write results
    "inspect",  # print the model and its accelerations
    "infer",  # recommendations from a saved model
    "embeddings",  # item and user vectors of a saved model, for retrieval
    "export",  # a saved model as ONNX and torch.export files, for serving
    "optimize",  # an Optuna search over training runs
    "bench",  # a matrix of training runs, compared
)
# The modes that read the training data (`dataset.*`); the others read a checkpoint and their own input.
DATA_MODES = ("train", "inspect", "optimize", "bench")


@dataclass
class FeatureSchema:
    query_column: str = "user_id"
    item_column: str = "item_id"
    rating_column: Optional[str] = "rating"  # null: the log has no ratings
    timestamp_column: str = "timestamp"


@dataclass
class Preprocess:
    global_split_ratio: float = 0.1
    val_users_ratio: float = 0.05
    min_val_users: int = 0  # ours: at least this many validation users (at most a fifth); 0: the reference's split
    min_users_per_item: int = 5
    min_items_per_user: int = 3
    min_rating: Optional[float] = 3
    protocol: str = "global_time"  # ours: or leave_one_out (see data/split.py)


@dataclass
class Generator:  # ours: sizes of the synthetic dataset
    n_users: int = 3000
    n_items: int = 400
    n_clusters: int = 20
    mean_length: float = 30
    min_length: int = 5
    max_length: int = 200
    transition_prob: float = 0.8
    popularity_exponent: float = 1.0
    seed: int = 42
    length_distribution: str = "geometric"  # or "lognormal": a long tail like MovieLens
    median_length: Optional[float] = None  # lognormal only


@dataclass
class ItemFeatures:  # ours: a table of item side features (data/item_features.py)
    path: Optional[str] = None  # null: the models know items by their ids only
    format: Optional[str] = None  # csv, tsv, parquet, json or movielens; null: from the file name
    item_column: str = "item_id"
    separator: Optional[str] = None  # of a CSV or TSV table; null: by its format
    list_separator: str = "|"  # between the values of a categorical_list column in a text table
    # The feature columns, by type:
    categorical: list[str] = field(default_factory=list)  # one value per item
    categorical_list: list[str] = field(default_factory=list)  # several values per item
    numerical: list[str] = field(default_factory=list)  # one number per item


@dataclass
class Dataset:
    name: str = MISSING
    source: str = MISSING  # ours: which loader reads the data
    path: Optional[str] = None  # ours: the file of the local and sequences sources
    separator: Optional[str] = None  # ours: for local text files
    encoding: str = "utf-8"  # ours: of local text files (e.g. latin-1, cp1252)
    url: Optional[str] = None  # ours: download mirror
    checksum: Optional[str] = None  # ours: "md5:..." or "sha256:..."
    feature_schema: FeatureSchema = field(default_factory=FeatureSchema)
    preprocess: Preprocess = field(default_factory=Preprocess)
    generator: Optional[Generator] = None
    item_features: ItemFeatures = field(default_factory=ItemFeatures)


@dataclass
class ModelParams:
    block_count: int = 2
    head_count: int = 2
    max_seq_len: int = 128
    hidden_size: int = 256
    dropout_rate: float = 0.1
    loss_type: str = "CE"
    loss_sample_count: Optional[int] = None
    n_buckets: Optional[int] = None
    bucket_size_x: Optional[int] = None
    bucket_size_y: Optional[int] = None
    mix_x: Optional[bool] = None
    negative_sampling_strategy: Optional[str] = None
    gbce_t: float = 0.75  # ours: gBCE's calibration t (losses/sampled.py)
    # ours: the parameters of a loss that has its own (its `options` in losses/__init__.py), e.g.
    # +model.params.model_params.loss_params.name=value, so that a new loss adds no key here
    loss_params: dict[str, Any] = field(default_factory=dict)
    mask_prob: float = 0.15  # ours: BERT4Rec masking probability
    masking: str = "replay"  # ours: BERT4Rec's rule, "replay" (RePlay's) or "at_least_one" (models/bert4rec.py)
    item_feature_aggregation: str = "sum"  # ours: sum (RePlay's SumAggregator) or concat (models/item_features.py)
    item_feature_head: str = "id_only"  # ours: or item_representation: the head scores id + features
    padding_attention: str = "masked"  # ours: SASRec's padding, "masked", "replay" or "replay_nn" (models/sasrec.py)


@dataclass
class TrainingParams:
    embedding_dim: int = 256
    learning_rate: float = 0.001
    weight_decay: float = 0.00001
    batch_size: int = 32
    num_workers: int = 4
    patience: int = 4
    max_epochs: int = 20
    precision: Optional[str] = "auto"  # training/precision.py; null: 32-true
    length_bucketing: bool = False  # ours: batch users of similar history length together
    init_from: Optional[str] = None  # ours: a checkpoint to start from; its catalog may differ (training/warm_start.py)


@dataclass
class Params:
    model_params: ModelParams = field(default_factory=ModelParams)
    training_params: TrainingParams = field(default_factory=TrainingParams)


# The `model.implementation` values that train RePlay 0.22's own model (the baselines) instead of ours, by RePlay's
# API, with how results name them: the deprecated replay.models.nn.sequential, or the newer replay.nn (SASRec only;
# training/replay_baseline.py).
REPLAY_IMPLEMENTATIONS = {"replay": "RePlay 0.22", "replay_nn": "RePlay 0.22 replay.nn"}


@dataclass
class Model:
    name: str = MISSING
    save_name: str = MISSING
    implementation: str = "replay_accelerated"  # ours: "replay" / "replay_nn" train RePlay 0.22's own model instead
    params: Params = field(default_factory=Params)


@dataclass
class PffBlock:
    act_fn: Optional[str] = None  # null: the model's own (BERT4Rec GELU, SASRec ReLU, as RePlay)


@dataclass
class TransformerBlockAcceleration:
    pff_block: PffBlock = field(default_factory=PffBlock)


@dataclass
class AccelerationConfig:
    """Every key has a default, so a preset may name only some of them."""

    dtype: str = "fp32"
    transformer_block: TransformerBlockAcceleration = field(default_factory=TransformerBlockAcceleration)
    head: str = "classification_head"
    tied_head: bool = False  # the item embeddings as the head's weight
    compile: bool = False  # ours: torch.compile the whole training step (model, loss, backward)


@dataclass
class AccelerationModel:
    acceleration_config: AccelerationConfig = field(default_factory=AccelerationConfig)


@dataclass
class Acceleration:
    model: AccelerationModel = field(default_factory=AccelerationModel)


@dataclass
class Profiler:
    enabled: bool = False
    row_limit: int = 20


@dataclass
class Bench:  # ours: mode=bench
    name: str = "bench"
    variants: dict[str, list[str]] = field(default_factory=dict)  # variant name -> overrides
    pairwise: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # option -> value -> overrides
    common: list[str] = field(default_factory=list)  # overrides applied to every variant (quick mode)
    # The precision of every variant that does not set its own: pinned, so that a table does not depend on the
    # machine's `auto` (training/precision.py).
    precision: str = "32-true"
    only: list[str] = field(default_factory=list)  # names of the variants to run; empty: all
    seeds: dict[str, int] = field(default_factory=dict)  # variant name -> seeds to train it with (others: 1)
    allow_mixed: bool = False  # true: append rows of other code or hardware to an existing results.csv
    steps: Optional[int] = None  # time this many training steps of every variant instead of training it
    warmup_steps: int = 5  # steps before the timed ones


@dataclass
class Infer:  # ours: mode=infer
    input: Optional[str] = None  # interactions file (csv, tsv, parquet) with dataset.feature_schema's columns
    checkpoint: Optional[str] = None  # null: paths.checkpoint_dir/<model.save_name>/best.ckpt
    output: Optional[str] = None  # null: paths.results_dir/<model.save_name>/recommendations_infer.parquet
    k: int = 10
    remove_seen: bool = True
    candidates: Any = None  # rank only these: a list of item ids, or a file of (user, item) pairs


@dataclass
class Embeddings:  # ours: mode=embeddings
    input: Optional[str] = None  # interactions file of the users to embed, as mode.infer.input
    checkpoint: Optional[str] = None  # null: paths.checkpoint_dir/<model.save_name>/best.ckpt
    output: Optional[str] = None  # folder; null: paths.results_dir/<model.save_name>/embeddings


@dataclass
class Export:  # ours: mode=export
    checkpoint: Optional[str] = None  # null: paths.checkpoint_dir/<model.save_name>/best.ckpt
    output: Optional[str] = None  # folder; null: paths.results_dir/<model.save_name>/export
    k: int = 100  # items returned by the top-k function
    opset: int = 18  # ONNX opset (17 or later)


@dataclass
class Mode:
    name: str = "train"
    profiler: Profiler = field(default_factory=Profiler)
    bench: Bench = field(default_factory=Bench)
    infer: Infer = field(default_factory=Infer)
    embeddings: Embeddings = field(default_factory=Embeddings)
    export: Export = field(default_factory=Export)
    # train: time `steps` training steps after `warmup_steps` instead of training (no validation, no test
    # metrics); null: train whole epochs. The bench's steps mode (mode.bench.steps) sets them.
    steps: Optional[int] = None
    warmup_steps: int = 5


@dataclass
class Env:
    SEED: int = 42
    CUDA_DEVICE_ORDER: Optional[str] = None
    OMP_NUM_THREADS: Optional[int] = None
    CUDA_VISIBLE_DEVICES: Optional[str] = None


@dataclass
class Paths:
    data_dir: str = "data"
    log_dir: str = "logs"
    checkpoint_dir: str = "checkpoints"
    results_dir: str = "results"


@dataclass
class Trainer:  # ours
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"  # "ddp" for several devices or nodes
    num_nodes: int = 1
    progress_bar: bool = True
    loggers: list[str] = field(default_factory=lambda: ["csv", "tensorboard"])  # training/tracking.py


@dataclass
class Metrics:
    types: list[str] = MISSING  # configs/config.yaml: all of evaluation/offline.py's METRICS
    ks: list[int] = field(default_factory=lambda: [1, 5, 10, 20, 100])


@dataclass
class Evaluation:  # ours
    item_chunk_size: Optional[int] = 65536  # validation, test and infer rank the catalog this many items at a time


@dataclass
class SearchParameter:  # ours: one dimension of the optuna search space
    key: str = MISSING  # a config key, e.g. model.params.training_params.learning_rate
    type: str = MISSING  # float | int | categorical
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False
    choices: Optional[list[Any]] = None


@dataclass
class Optuna:  # ours: mode=optimize
    study_name: Optional[str] = None  # null: <model.save_name>
    n_trials: int = 20  # trials in the study in all, counting those of interrupted runs
    timeout: Optional[float] = None  # seconds for this run's trials; null: no limit
    search_space: list[SearchParameter] = field(default_factory=list)


@dataclass
class Config:
    dataset: Dataset = field(default_factory=Dataset)
    model: Model = field(default_factory=Model)
    mode: Mode = field(default_factory=Mode)
    acceleration: Optional[Acceleration] = None  # null: no acceleration
    env: Env = field(default_factory=Env)
    paths: Paths = field(default_factory=Paths)
    trainer: Trainer = field(default_factory=Trainer)
    metrics: Metrics = field(default_factory=Metrics)
    evaluation: Evaluation = field(default_factory=Evaluation)
    optuna: Optuna = field(default_factory=Optuna)
    trust_checkpoint: bool = False  # ours: true loads model files that hold code-bearing objects (see docs/operating.md)
    validate_only: bool = False  # ours: true composes and validates the command as its mode would, then stops


def _sets(node: DictConfig, key: str) -> bool:
    """Whether the config file `node` sets `key`, to a value or to '???' (a value the user must give)."""
    absent = object()
    try:
        return OmegaConf.select(node, key, default=absent, throw_on_missing=True) is not absent
    except MissingMandatoryValue:
        return True


@dataclass
class ConfigOrigin:
    """Where each part of the composed config came from, to name it in errors."""

    # Where config files are looked up, first match wins: Hydra's search path (a user's `--config-dir` first).
    search_dirs: list[str] = field(default_factory=lambda: [str(CONFIG_DIR)])
    config_name: str = "config"
    group_choices: dict[str, Optional[str]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    def run_overrides(self) -> list[str]:
        """The command-line overrides without those choosing the mode: what a training run inherits. An
        `experiment=` stays, for its other settings; the run's own `mode=train` replaces the mode it chooses."""
        return [override for override in self.overrides
                if not re.match(r"mode($|\.)", override.lstrip("+~").split("=")[0])]

    def file_of(self, key: str) -> str:
        """The file (or the command line) that set `key`, e.g. `configs/model/x.yaml`."""
        for override in reversed(self.overrides):  # a key given twice: Hydra applies the last
            if override.lstrip("+~").split("=")[0] == key:
                return f"the command-line override '{override}'"
        # An experiment (`# @package _global_`) names whole keys and comes after every other file.
        experiment = self.group_choices.get("experiment")
        path = experiment and self._find(f"experiment/{experiment}.yaml")
        if path and _sets(OmegaConf.load(path), key):
            return path
        # The config groups the key lies in, innermost first: `dataset.item_features.path` is in `dataset/item_features`
        # (its choice's file) and in `dataset` (whose file may set it too).
        parts = key.split(".")
        groups = [("/".join(parts[:depth]), ".".join(parts[depth:])) for depth in range(len(parts) - 1, 0, -1)
                  if self.group_choices.get("/".join(parts[:depth]))]
        if not groups:
            return self._find(f"{self.config_name}.yaml") or f"{self.config_name}.yaml"
        for group, rest in groups:
            for path in self._chain(group, self.group_choices[group]):
                if _sets(OmegaConf.load(path), rest):
                    return path
        group, _ = groups[0]
        chain = self._chain(group, self.group_choices[group])
        return chain[0] if chain else f"{group}/{self.group_choices[group]}.yaml"

    def _chain(self, group: str, choice: str) -> list[str]:
        """The files of a group's choice: the chosen one, then those it extends (`defaults: [bert4rec]`)."""
        chain, pending = [], [choice]
        while pending:
            path = self._find(f"{group}/{pending.pop(0)}.yaml")
            if path is None or path in chain:
                continue
            chain.append(path)
            defaults = OmegaConf.load(path).get("defaults") or []
            pending += [entry for entry in defaults if isinstance(entry, str) and entry != "_self_"]
        return chain

    def _find(self, name: str) -> Optional[str]:
        for directory in self.search_dirs:
            if (Path(directory) / name).is_file():
                return str(Path(directory) / name)
        return None
