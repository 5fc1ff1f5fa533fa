"""The checks of a config that a type cannot express: every name against the registry beside the code that
implements it (models, losses, activations, heads, dtypes, datasets, protocols, precisions, metrics, modes),
ranges, consistency and loss parameters. validation.py calls `check_values` once the config fits the schema:
importing the registries loads torch, Lightning and RePlay's preprocessing.
"""

from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from replay_accelerated.acceleration.apply import ACTIVATIONS, DTYPES, HEAD_ALIASES, HEADS
from replay_accelerated.config import DATA_MODES, MODES, REPLAY_IMPLEMENTATIONS, AccelerationConfig, ConfigOrigin
from replay_accelerated.data.catalog import CATALOG, MOVIELENS_SOURCES
from replay_accelerated.data.item_features import declaration_problem, declared_columns
from replay_accelerated.data.split import PROTOCOLS
from replay_accelerated.data.sources import FILE_SOURCES, ORDER_ONLY_SOURCES, SOURCES
from replay_accelerated.data.synthetic import generator_problem
from replay_accelerated.errors import ConfigError
from replay_accelerated.evaluation.offline import METRICS
from replay_accelerated.losses import LOSSES, loss_params_problem, samples_negatives
from replay_accelerated.models import MODELS
from replay_accelerated.models.bert4rec import MASKING_RULES
from replay_accelerated.models.item_features import AGGREGATIONS
from replay_accelerated.models.sasrec import PADDING_ATTENTION
from replay_accelerated.models.transformer import ITEM_FEATURE_HEADS
from replay_accelerated.training.precision import PRECISIONS, REPLAY_PRECISIONS
from replay_accelerated.training.tracking import LOGGERS, missing_package

IMPLEMENTATIONS = ("replay_accelerated", *REPLAY_IMPLEMENTATIONS)  # ours, or RePlay 0.22's own model (the baselines)


def _check_replay(cfg: DictConfig, require) -> None:
    """RePlay's own model (the baseline) honours every setting it is given, or the run stops here."""
    from replay_accelerated.training import replay_baseline  # imports RePlay (seconds): only for its rows

    model_params, training = cfg.model.params.model_params, cfg.model.params.training_params
    prefix, why = "model.params.model_params", f"with model.implementation={cfg.model.implementation}"
    models = replay_baseline.LOSS_TYPES[cfg.model.implementation]
    require(cfg.model.name in models, "model.implementation",
            f"RePlay 0.22's API '{cfg.model.implementation}' has no {cfg.model.name}; use model.implementation=replay")
    supported = models[cfg.model.name]
    require(model_params.loss_type in supported, f"{prefix}.loss_type",
            f"RePlay 0.22's {cfg.model.name} has no '{model_params.loss_type}' loss; "
            f"use one of {list(supported)} {why}")
    if samples_negatives(model_params):
        require(model_params.loss_sample_count is not None, f"{prefix}.loss_sample_count",
                f"loss_type={model_params.loss_type} needs it, e.g. {prefix}.loss_sample_count=256")
    require(not model_params.loss_params, f"{prefix}.loss_params",
            f"RePlay's losses take none of our losses' own parameters; remove it {why}")
    require(model_params.negative_sampling_strategy in replay_baseline.SAMPLING_STRATEGIES,
            f"{prefix}.negative_sampling_strategy",
            f"RePlay's models sample negatives uniformly only; use null or uniform {why}")
    precision = None if training.precision is None else str(training.precision)
    require(precision in REPLAY_PRECISIONS, "model.params.training_params.precision",
            f"'{precision}' is not measured for RePlay's models; use auto, 32-true or bf16-mixed {why}")
    require(model_params.masking == "replay", f"{prefix}.masking",
            f"RePlay's Bert4Rec masks with its own rule only; use replay {why}")
    require(not training.length_bucketing, "model.params.training_params.length_bucketing",
            f"RePlay's loaders pad every sequence to max_seq_len; set it to false {why}")
    require(training.init_from is None, "model.params.training_params.init_from",
            f"RePlay's baseline always starts from scratch; remove it {why}")
    require(not declared_columns(cfg.dataset.item_features) or cfg.model.implementation == "replay_nn",
            "model.implementation", "item features train with RePlay's replay.nn SasRec (its SequenceEmbedding): "
            "use model.implementation=replay_nn, or remove the item features")
    require(model_params.item_feature_head == "id_only" and model_params.item_feature_aggregation == "sum",
            f"{prefix}.item_feature_head", f"RePlay's SasRec sums the features into its input and scores item ids "
            f"only; use item_feature_head=id_only and item_feature_aggregation=sum {why}")
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


def check_values(cfg: DictConfig, origin: ConfigOrigin) -> None:
    """Checks a type cannot express, section by section: choices, ranges and consistency."""

    def require(ok: bool, key: str, problem: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}' in {origin.file_of(key)}: {problem}")

    for check in (_check_model, _check_metrics, _check_mode, _check_acceleration, _check_dataset, _check_loss):
        check(cfg, require)


def _check_model(cfg: DictConfig, require) -> None:
    model_params = cfg.model.params.model_params
    training = cfg.model.params.training_params
    prefix = "model.params.model_params"
    require(cfg.model.name in MODELS, "model.name", f"'{cfg.model.name}' is not one of {list(MODELS)}")
    require(cfg.model.implementation in IMPLEMENTATIONS, "model.implementation",
            f"'{cfg.model.implementation}' is not one of {list(IMPLEMENTATIONS)}")
    require(model_params.loss_type in LOSSES, f"{prefix}.loss_type",
            f"'{model_params.loss_type}' is not one of {list(LOSSES)}")
    require(model_params.max_seq_len >= 2, f"{prefix}.max_seq_len", "must be at least 2")
    require(model_params.block_count >= 1, f"{prefix}.block_count", "must be at least 1")
    require(model_params.head_count >= 1 and model_params.hidden_size % model_params.head_count == 0,
            f"{prefix}.head_count", f"must divide hidden_size ({model_params.hidden_size})")
    require(0.0 <= model_params.dropout_rate < 1.0, f"{prefix}.dropout_rate", "must be in [0, 1)")
    require(0.0 < model_params.mask_prob < 1.0, f"{prefix}.mask_prob", "must be in (0, 1)")
    require(model_params.masking in MASKING_RULES, f"{prefix}.masking",
            f"'{model_params.masking}' is not one of {list(MASKING_RULES)}")
    require(model_params.padding_attention in PADDING_ATTENTION, f"{prefix}.padding_attention",
            f"'{model_params.padding_attention}' is not one of {list(PADDING_ATTENTION)}")
    require(model_params.padding_attention == "masked" or cfg.model.name == "sasrec", f"{prefix}.padding_attention",
            "only SASRec has the RePlay settings (RePlay's BERT4Rec masks padding keys as ours does); set masked")
    require(model_params.item_feature_aggregation in AGGREGATIONS, f"{prefix}.item_feature_aggregation",
            f"'{model_params.item_feature_aggregation}' is not one of {list(AGGREGATIONS)}")
    require(model_params.item_feature_head in ITEM_FEATURE_HEADS, f"{prefix}.item_feature_head",
            f"'{model_params.item_feature_head}' is not one of {list(ITEM_FEATURE_HEADS)}")
    require(training.embedding_dim == model_params.hidden_size, "model.params.training_params.embedding_dim",
            f"must equal model_params.hidden_size ({model_params.hidden_size}): "
            "item embeddings are the transformer's input")
    require(training.batch_size > 0, "model.params.training_params.batch_size", "must be a positive integer")
    require(training.max_epochs > 0, "model.params.training_params.max_epochs", "must be a positive integer")
    require(training.num_workers >= 0, "model.params.training_params.num_workers", "must be 0 or more")
    require(training.learning_rate > 0, "model.params.training_params.learning_rate", "must be positive")
    require(training.init_from is None or Path(training.init_from).is_file(),
            "model.params.training_params.init_from", f"{training.init_from} is not a file; name a best.ckpt (or "
            "last.ckpt) that mode=train wrote, with its items.parquet beside it")
    precision = None if training.precision is None else str(training.precision)
    require(precision in PRECISIONS, "model.params.training_params.precision",
            f"'{precision}' is not one of {[p for p in PRECISIONS if p]} or null")
    for logger in cfg.trainer.loggers:
        require(logger in LOGGERS, "trainer.loggers", f"'{logger}' is not one of {list(LOGGERS)}")
        require(missing_package(logger) is None, "trainer.loggers",
                f"{logger} is not installed; pip install {missing_package(logger)} (or drop it from the list)")
    if cfg.model.implementation in REPLAY_IMPLEMENTATIONS:
        _check_replay(cfg, require)


def _check_metrics(cfg: DictConfig, require) -> None:
    for metric in cfg.metrics.types:
        require(metric in METRICS, "metrics.types", f"'{metric}' is not one of {list(METRICS)}")
    require(len(cfg.metrics.ks) > 0 and all(k > 0 for k in cfg.metrics.ks), "metrics.ks",
            "must be a non-empty list of positive integers")
    require(10 in cfg.metrics.ks, "metrics.ks", "must contain 10 (early stopping watches validation NDCG@10)")
    chunk = cfg.evaluation.item_chunk_size
    require(chunk is None or chunk > 0, "evaluation.item_chunk_size",
            "must be a positive number of items, or null (the whole catalog at once)")


def _check_mode(cfg: DictConfig, require) -> None:
    require(cfg.mode.name in MODES, "mode.name", f"'{cfg.mode.name}' is not one of {list(MODES)}")
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
    if cfg.mode.name == "infer":
        require(cfg.mode.infer.input is not None, "mode.infer.input",
                "name the interactions file to recommend for: mode.infer.input=/path/to/file")
        require(cfg.mode.infer.k > 0, "mode.infer.k", "must be a positive integer")
        candidates = cfg.mode.infer.candidates
        require(candidates is None or OmegaConf.is_list(candidates) and len(candidates) > 0
                or isinstance(candidates, str), "mode.infer.candidates",
                "must be null, a non-empty list of item ids, or the path of a file of (user, item) pairs")
    if cfg.mode.name == "embeddings":
        require(cfg.mode.embeddings.input is not None, "mode.embeddings.input",
                "name the interactions file of the users to embed: mode.embeddings.input=/path/to/file")
    if cfg.mode.name == "export":
        require(cfg.mode.export.k > 0, "mode.export.k", "must be a positive integer")
        require(cfg.mode.export.opset >= 17, "mode.export.opset", "must be 17 or later (the exporter's minimum)")
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


def _check_acceleration(cfg: DictConfig, require) -> None:
    if cfg.acceleration is None:
        return
    model_params = cfg.model.params.model_params
    settings = cfg.acceleration.model.acceleration_config
    prefix = "acceleration.model.acceleration_config"
    require(settings.dtype in DTYPES, f"{prefix}.dtype", f"'{settings.dtype}' is not one of {list(DTYPES)}")
    head = HEAD_ALIASES.get(settings.head, settings.head)
    require(head in HEADS, f"{prefix}.head", f"'{settings.head}' is not one of {list(HEADS)}")
    require(settings.transformer_block.pff_block.act_fn in (None, *ACTIVATIONS),
            f"{prefix}.transformer_block.pff_block.act_fn",
            f"'{settings.transformer_block.pff_block.act_fn}' is not one of {list(ACTIVATIONS)} or null "
            "(the model's own)")
    # SCE and CCE compute logits from head.weight themselves, so the int8 path would be skipped silently.
    require(not (head == "switchback_head" and model_params.loss_type in LOSSES
                 and LOSSES[model_params.loss_type].reads_head_weight),
            f"{prefix}.head", f"loss_type={model_params.loss_type} reads the head's weight directly and would "
            "run in float, not through SwitchBack's int8 path; use head=linear_head with this loss, or with "
            f"head=switchback_head a loss that scores through the head: "
            f"{[name for name, loss in LOSSES.items() if not loss.reads_head_weight]}")


def _check_dataset(cfg: DictConfig, require) -> None:
    require(cfg.dataset.source in SOURCES, "dataset.source", f"'{cfg.dataset.source}' is not one of {list(SOURCES)}")
    if cfg.dataset.source == "synthetic":
        require(cfg.dataset.generator is not None, "dataset.generator", "the synthetic source needs generator sizes")
        problem = generator_problem(cfg.dataset.generator)
        require(problem is None, "dataset.generator", problem or "")
    source, preprocess = cfg.dataset.source, cfg.dataset.preprocess
    if source in FILE_SOURCES and cfg.mode.name in DATA_MODES:
        require(cfg.dataset.path is not None, "dataset.path", "name your interactions file: dataset.path=/path/to/file")
    if source in CATALOG:
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
    features = cfg.dataset.item_features
    key, problem = declaration_problem(features) or ("", None)
    require(problem is None, key, problem or "")
    require(features.format != "movielens" or features.path is not None or source in MOVIELENS_SOURCES,
            "dataset.item_features.path", f"MovieLens' genres come from the archive of dataset={'/'.join(MOVIELENS_SOURCES)}"
            f" (this is dataset.source={source}); set it to the movies file (movies.dat or movies.csv)")


def _check_loss(cfg: DictConfig, require) -> None:
    """The parameters the configured loss needs (losses/__init__.py)."""
    if cfg.model.implementation not in REPLAY_IMPLEMENTATIONS:  # RePlay's own losses: _check_replay
        key, problem = loss_params_problem(cfg.model.params.model_params) or ("", None)
        require(problem is None, f"model.params.model_params.{key}", problem or "")
