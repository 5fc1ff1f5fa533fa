"""The configuration schema and its validation.

Hydra composes `configs/config.yaml` with one file per group (`dataset/`, `model/`,
`mode/`, `acceleration/`) and the command-line overrides. Before any work starts,
`validate` merges the result into the dataclasses below, so that a typo, an unknown
key, a wrong type or a missing value stops the run with a message naming the key and
the file it came from, instead of failing an hour into training.

The keys and defaults are the reference project's (RePlay-Accelerated), so its config
files work unchanged; keys it did not have are marked "ours".
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import (
    ConfigKeyError,
    MissingMandatoryValue,
    OmegaConfBaseException,
    ValidationError,
)

from replay_accelerated.errors import ConfigError

MODEL_NAMES = ("bert4rec", "sasrec")
# Loaders (`data/sources.py`): a generator, your own files, and the public datasets of
# `data/catalog.py` (tests check that this list and the catalog agree).
FILE_SOURCES = ("local", "sequences")  # read `dataset.path`
CATALOG_SOURCES = ("movielens_1m", "movielens_10m", "movielens_20m", "netflix", "zvuk", "megamarket", "yelp",
                   "amazon_games", "amazon_beauty", "amazon_sports", "30music", "gowalla", "s3rec_beauty")
DATASET_SOURCES = ("synthetic", *FILE_SOURCES, *CATALOG_SOURCES)
ORDER_ONLY_SOURCES = ("sequences", "s3rec_beauty")  # no timestamps: positions only, so leave-one-out only
PROTOCOLS = ("global_time", "leave_one_out")
LOSS_TYPES = ("CE", "CE_restricted", "CE_full_positions", "CE_sampled", "BCE", "SCE", "CCE")
PRECISIONS = ("auto", None, "32", "32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64", "64-true")
ACTIVATIONS = ("gelu", "gelu_pytorch_tanh", "selu", "silu", "relu")
HEADS = ("classification_head", "linear_head", "swichback_head")
DTYPES = ("fp32", "bf16", "fp16")
IMPLEMENTATIONS = ("replay_accelerated", "replay")  # ours, or RePlay 0.22's own model (the baseline)
# What RePlay 0.22's own models can train with (benchmark/replay_baseline.py maps these names to RePlay's).
REPLAY_LOSS_TYPES = {"bert4rec": ("CE", "CE_restricted", "CE_sampled", "BCE"), "sasrec": ("CE", "CE_sampled", "BCE")}
REPLAY_PRECISIONS = ("auto", None, "32", "32-true", "bf16-mixed")
REPLAY_SAMPLING_STRATEGIES = (None, "uniform")  # RePlay's "global_uniform"
MASKING_RULES = ("replay", "at_least_one")  # BERT4Rec's training examples (models/bert4rec.py)
MODES = ("train", "inspect", "bench", "optimize", "infer")
METRIC_TYPES = ("ndcg", "recall", "hitrate", "precision", "map", "mrr", "coverage", "surprisal")


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
    protocol: str = "global_time"  # ours: or leave_one_out (see data/preprocessing.py)


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
class Dataset:
    name: str = MISSING
    source: str = MISSING  # ours: which loader reads the data
    path: Optional[str] = None  # ours: the file of the local and sequences sources
    separator: Optional[str] = None  # ours: for local text files
    url: Optional[str] = None  # ours: download mirror
    checksum: Optional[str] = None  # ours: "md5:..." or "sha256:..."
    feature_schema: FeatureSchema = field(default_factory=FeatureSchema)
    preprocess: Preprocess = field(default_factory=Preprocess)
    generator: Optional[Generator] = None


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
    mask_prob: float = 0.15  # ours: BERT4Rec masking probability
    masking: str = "replay"  # ours: BERT4Rec's rule, "replay" (RePlay's) or "at_least_one" (models/bert4rec.py)


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


@dataclass
class Params:
    model_params: ModelParams = field(default_factory=ModelParams)
    training_params: TrainingParams = field(default_factory=TrainingParams)


@dataclass
class Model:
    name: str = MISSING
    save_name: str = MISSING
    implementation: str = "replay_accelerated"  # ours: "replay" trains RePlay 0.22's own model instead
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
    compile: bool = False  # ours: torch.compile the transformer body


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


@dataclass
class Mode:
    name: str = "train"
    profiler: Profiler = field(default_factory=Profiler)
    bench: Bench = field(default_factory=Bench)
    infer: Infer = field(default_factory=Infer)
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


@dataclass
class Metrics:
    types: list[str] = field(default_factory=lambda: list(METRIC_TYPES))
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
    trust_checkpoint: bool = False  # ours: true loads model files that hold code-bearing objects (see README)


@dataclass
class ConfigOrigin:
    """Where each part of the composed config came from, to name it in errors."""

    search_dirs: list[str] = field(default_factory=lambda: ["configs"])
    config_name: str = "config"
    group_choices: dict[str, Optional[str]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)

    def run_overrides(self) -> list[str]:
        """The command-line overrides without those choosing the mode: what a training run inherits."""
        return [override for override in self.overrides
                if not re.match(r"mode($|\.)", override.lstrip("+~").split("=")[0])]

    def file_of(self, key: str) -> str:
        """The file (or the command line) that set `key`, e.g. `configs/model/x.yaml`."""
        for override in self.overrides:
            if override.lstrip("+~").split("=")[0] == key:
                return f"the command-line override '{override}'"
        group, _, rest = key.partition(".")
        choice = self.group_choices.get(group)
        if not choice:
            return self._find(f"{self.config_name}.yaml") or f"{self.config_name}.yaml"
        # A group file may extend others of its group (`defaults: [bert4rec]`): name the one that sets the key.
        chain, pending = [], [choice]
        while pending:
            path = self._find(f"{group}/{pending.pop(0)}.yaml")
            if path is None or path in chain:
                continue
            chain.append(path)
            defaults = OmegaConf.load(path).get("defaults") or []
            pending += [entry for entry in defaults if isinstance(entry, str) and entry != "_self_"]
        for path in chain:
            absent = object()
            if OmegaConf.select(OmegaConf.load(path), rest, default=absent) is not absent:
                return path
        return chain[0] if chain else f"{group}/{choice}.yaml"

    def _find(self, name: str) -> Optional[str]:
        for directory in self.search_dirs:
            if (Path(directory) / name).is_file():
                return str(Path(directory) / name)
        return None


def validate(cfg: DictConfig, origin: ConfigOrigin) -> DictConfig:
    """Check `cfg` against the schema and the allowed values; return the typed config."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        OmegaConf.to_container(typed, resolve=True, throw_on_missing=True)
        OmegaConf.resolve(typed)  # paths from environment variables are fixed from here on
    except (ConfigKeyError, ValidationError, MissingMandatoryValue) as error:
        raise ConfigError(_describe(error, origin)) from None
    except OmegaConfBaseException as error:  # interpolation and other composition errors
        raise ConfigError(f"invalid configuration: {error}") from None
    _check_values(typed, origin)
    return typed


def _describe(error: OmegaConfBaseException, origin: ConfigOrigin) -> str:
    key = error.full_key or "?"
    where = origin.file_of(key)
    if isinstance(error, MissingMandatoryValue):
        return (
            f"config key '{key}' has no value (it is '???' in {where}); "
            f"set it there or on the command line: {key}=..."
        )
    if isinstance(error, ConfigKeyError):
        parent = key.rsplit(".", 1)[0] if "." in key else "the top level"
        known = _known_keys(parent)
        return (
            f"unknown config key '{key}' in {where}; check its spelling. "
            f"Keys allowed under {parent}: {', '.join(known) or '(none)'}"
        )
    return f"config key '{key}' in {where} has a wrong type or value: {error.msg}"


def _known_keys(parent: str) -> list[str]:
    node: Any = OmegaConf.structured(Config)
    if parent != "the top level":
        node = OmegaConf.select(node, parent)
    return list(node.keys()) if isinstance(node, DictConfig) else []


def _check_replay(cfg: DictConfig, require) -> None:
    """RePlay's own model (the baseline) honours every setting it is given, or the run stops here."""
    model_params, training = cfg.model.params.model_params, cfg.model.params.training_params
    prefix, why = "model.params.model_params", "with model.implementation=replay"
    supported = REPLAY_LOSS_TYPES[cfg.model.name]
    require(model_params.loss_type in supported, f"{prefix}.loss_type",
            f"RePlay 0.22's {cfg.model.name} has no '{model_params.loss_type}' loss; use one of {list(supported)} {why}")
    if model_params.loss_type in ("CE_sampled", "BCE"):
        require(model_params.loss_sample_count is not None, f"{prefix}.loss_sample_count",
                f"loss_type={model_params.loss_type} needs it, e.g. {prefix}.loss_sample_count=256")
    require(model_params.negative_sampling_strategy in REPLAY_SAMPLING_STRATEGIES, f"{prefix}.negative_sampling_strategy",
            f"RePlay's models sample negatives uniformly only; use null or uniform {why}")
    precision = None if training.precision is None else str(training.precision)
    require(precision in REPLAY_PRECISIONS, "model.params.training_params.precision",
            f"'{precision}' is not measured for RePlay's models; use auto, 32-true or bf16-mixed {why}")
    require(model_params.masking == "replay", f"{prefix}.masking",
            f"RePlay's Bert4Rec masks with its own rule only; use replay {why}")
    require(not training.length_bucketing, "model.params.training_params.length_bucketing",
            f"RePlay's loaders pad every sequence to max_seq_len; set it to false {why}")
    if cfg.acceleration is not None:
        settings = OmegaConf.to_container(cfg.acceleration.model.acceleration_config)
        defaults = OmegaConf.to_container(OmegaConf.structured(AccelerationConfig))
        changed = [key for key in defaults if settings[key] != defaults[key]]
        require(not changed, f"acceleration.model.acceleration_config.{changed[0] if changed else ''}",
                f"RePlay's own model cannot be accelerated; drop the acceleration (acceleration=null) {why}")
    trainer = cfg.trainer
    require(trainer.num_nodes == 1, "trainer.num_nodes", f"RePlay's baseline runs in one process; use 1 {why}")
    require(trainer.strategy in ("auto", "single_device"), "trainer.strategy",
            f"RePlay's baseline runs in one process; use auto {why}")
    require(str(trainer.devices) in ("auto", "1", "[0]") or OmegaConf.is_list(trainer.devices)
            and len(trainer.devices) == 1, "trainer.devices",
            f"RePlay's baseline trains on one device; use 1 or a list of one device id {why}")


def _check_values(cfg: DictConfig, origin: ConfigOrigin) -> None:
    """Checks a type cannot express: choices, ranges and consistency."""

    def require(ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}' in {origin.file_of(key)}: {problem}")

    model_params = cfg.model.params.model_params
    training = cfg.model.params.training_params
    prefix = "model.params.model_params"
    require(cfg.model.name in MODEL_NAMES, "model.name", f"'{cfg.model.name}' is not one of {list(MODEL_NAMES)}")
    require(cfg.model.implementation in IMPLEMENTATIONS, "model.implementation",
            f"'{cfg.model.implementation}' is not one of {list(IMPLEMENTATIONS)}")
    require(cfg.dataset.source in DATASET_SOURCES, "dataset.source",
            f"'{cfg.dataset.source}' is not one of {list(DATASET_SOURCES)}")
    require(cfg.mode.name in MODES, "mode.name", f"'{cfg.mode.name}' is not one of {list(MODES)}")
    require(model_params.loss_type in LOSS_TYPES, f"{prefix}.loss_type",
            f"'{model_params.loss_type}' is not one of {list(LOSS_TYPES)}")
    require(model_params.max_seq_len >= 2, f"{prefix}.max_seq_len", "must be at least 2")
    require(model_params.block_count >= 1, f"{prefix}.block_count", "must be at least 1")
    require(model_params.head_count >= 1 and model_params.hidden_size % model_params.head_count == 0,
            f"{prefix}.head_count", f"must divide hidden_size ({model_params.hidden_size})")
    require(0.0 <= model_params.dropout_rate < 1.0, f"{prefix}.dropout_rate", "must be in [0, 1)")
    require(0.0 < model_params.mask_prob < 1.0, f"{prefix}.mask_prob", "must be in (0, 1)")
    require(model_params.masking in MASKING_RULES, f"{prefix}.masking",
            f"'{model_params.masking}' is not one of {list(MASKING_RULES)}")
    require(training.embedding_dim == model_params.hidden_size, "model.params.training_params.embedding_dim",
            f"must equal model_params.hidden_size ({model_params.hidden_size}): "
            "item embeddings are the transformer's input")
    require(training.batch_size > 0, "model.params.training_params.batch_size", "must be a positive integer")
    require(training.max_epochs > 0, "model.params.training_params.max_epochs", "must be a positive integer")
    require(training.num_workers >= 0, "model.params.training_params.num_workers", "must be 0 or more")
    require(training.learning_rate > 0, "model.params.training_params.learning_rate", "must be positive")
    precision = None if training.precision is None else str(training.precision)
    require(precision in PRECISIONS, "model.params.training_params.precision",
            f"'{precision}' is not one of {[p for p in PRECISIONS if p]} or null")
    for metric in cfg.metrics.types:
        require(metric in METRIC_TYPES, "metrics.types", f"'{metric}' is not one of {list(METRIC_TYPES)}")
    require(len(cfg.metrics.ks) > 0 and all(k > 0 for k in cfg.metrics.ks), "metrics.ks",
            "must be a non-empty list of positive integers")
    require(10 in cfg.metrics.ks, "metrics.ks", "must contain 10 (early stopping watches validation NDCG@10)")
    chunk = cfg.evaluation.item_chunk_size
    require(chunk is None or chunk > 0, "evaluation.item_chunk_size",
            "must be a positive number of items, or null (the whole catalog at once)")
    if cfg.mode.name == "bench":
        require(len(cfg.mode.bench.variants) + len(cfg.mode.bench.pairwise) > 0, "mode.bench.variants",
                "a bench needs at least one variant (a list of overrides) or pairwise options")
        require({"ndcg", "hitrate"} <= set(cfg.metrics.types), "metrics.types",
                "a bench compares NDCG@10 and HitRate@10; include ndcg and hitrate")
        for variant, count in cfg.mode.bench.seeds.items():
            require(count >= 1, f"mode.bench.seeds.{variant}", "must be at least 1")
        require(cfg.mode.bench.steps is None or cfg.mode.bench.steps > 0, "mode.bench.steps",
                "must be a positive number of steps, or null to train whole epochs")
        require(cfg.mode.bench.warmup_steps >= 0, "mode.bench.warmup_steps", "must be 0 or more")
    if cfg.mode.steps is not None:
        require(cfg.mode.name == "train", "mode.steps", "times training steps of mode=train (or of a bench's "
                "variants: mode.bench.steps); remove it")
        require(cfg.mode.steps > 0, "mode.steps", "must be a positive number of steps, or null to train")
        require(cfg.mode.warmup_steps >= 0, "mode.warmup_steps", "must be 0 or more")
        require(cfg.trainer.num_nodes == 1 and str(cfg.trainer.strategy) in ("auto", "single_device"),
                "trainer.strategy", "steps are timed in one process; use the default strategy")
    if cfg.model.implementation == "replay":
        _check_replay(cfg, require)
    if cfg.mode.name == "infer":
        require(cfg.mode.infer.input is not None, "mode.infer.input",
                "name the interactions file to recommend for: mode.infer.input=/path/to/file")
        require(cfg.mode.infer.k > 0, "mode.infer.k", "must be a positive integer")
    if cfg.mode.name == "optimize":
        require(len(cfg.optuna.search_space) > 0, "optuna.search_space", "list at least one parameter to search")
        require(cfg.optuna.n_trials > 0, "optuna.n_trials", "must be a positive integer")
        for index, parameter in enumerate(cfg.optuna.search_space):
            key = f"optuna.search_space[{index}]"
            require(parameter.type in ("float", "int", "categorical"), f"{key}.type",
                    f"'{parameter.type}' is not one of float, int, categorical")
            if parameter.type == "categorical":
                require(bool(parameter.choices), f"{key}.choices", "a categorical parameter needs choices")
            else:
                require(parameter.low is not None and parameter.high is not None and parameter.low < parameter.high,
                        f"{key}.low", "a numeric parameter needs low < high")
    if cfg.acceleration is not None:
        settings = cfg.acceleration.model.acceleration_config
        prefix = "acceleration.model.acceleration_config"
        require(settings.dtype in DTYPES, f"{prefix}.dtype", f"'{settings.dtype}' is not one of {list(DTYPES)}")
        require(settings.head in HEADS, f"{prefix}.head", f"'{settings.head}' is not one of {list(HEADS)}")
        require(settings.transformer_block.pff_block.act_fn in (None, *ACTIVATIONS),
                f"{prefix}.transformer_block.pff_block.act_fn",
                f"'{settings.transformer_block.pff_block.act_fn}' is not one of {list(ACTIVATIONS)} or null "
                "(the model's own)")
        require(not (settings.tied_head and settings.head == "swichback_head"), f"{prefix}.tied_head",
                "the SwitchBack head has its own weight; use tied_head=false or another head")
        # SCE and CCE compute logits from head.weight themselves, so the int8 path would be skipped silently.
        require(not (settings.head == "swichback_head" and model_params.loss_type in ("SCE", "CCE")),
                f"{prefix}.head", f"loss_type={model_params.loss_type} reads the head's weight directly and would "
                "run in float, not through SwitchBack's int8 path; use head=linear_head with this loss, or "
                "loss_type=CE / CE_sampled with head=swichback_head")
    if cfg.dataset.source == "synthetic":
        require(cfg.dataset.generator is not None, "dataset.generator", "the synthetic source needs generator sizes")
    source, preprocess = cfg.dataset.source, cfg.dataset.preprocess
    if source in FILE_SOURCES:
        require(cfg.dataset.path is not None, "dataset.path", "name your interactions file: dataset.path=/path/to/file")
    if source in CATALOG_SOURCES:
        require(cfg.dataset.path is None, "dataset.path",
                f"the {source} dataset is always read from paths.data_dir (the error on a missing file says where "
                "to put a copy you downloaded); use dataset=local or dataset=sequences to read a file of your own")
    require(preprocess.protocol in PROTOCOLS, "dataset.preprocess.protocol",
            f"'{preprocess.protocol}' is not one of {list(PROTOCOLS)}")
    if source in ORDER_ONLY_SOURCES:
        require(preprocess.protocol == "leave_one_out", "dataset.preprocess.protocol",
                f"the {source} source has no timestamps (only the order of each user's items), so it can only be "
                "split leave-one-out: set dataset.preprocess.protocol=leave_one_out")
    require(0.0 < preprocess.global_split_ratio < 1.0, "dataset.preprocess.global_split_ratio", "must be in (0, 1)")
    require(0.0 < preprocess.val_users_ratio < 1.0, "dataset.preprocess.val_users_ratio", "must be in (0, 1)")
    require(preprocess.min_val_users >= 0, "dataset.preprocess.min_val_users", "must be 0 or more")
