"""Item side features: reading and encoding the table (data/item_features.py), the feature embeddings against a
plain reference (models/item_features.py), both models and both head modes, checkpoints, and clear errors."""

import copy
import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import SHARED_DATA, TINY_SYNTHETIC, run_main
from replay_accelerated.acceleration.apply import apply_accelerations
from replay_accelerated.acceleration.switchback import TiedSwitchBackHead
from replay_accelerated.config import Acceleration, ModelParams
from replay_accelerated.config import ItemFeatures as ItemFeaturesConfig
from replay_accelerated.data.formats import item_sequences
from replay_accelerated.data.item_features import read_item_features
from replay_accelerated.data.sequences import ItemVocabulary
from replay_accelerated.errors import ConfigError, DataError
from replay_accelerated.models import build_model
from replay_accelerated.models.files import STAMP_KEY
from replay_accelerated.models.item_features import CategoricalFeature, ItemFeatureEmbedding
from replay_accelerated.training.warm_start import warm_start

TYPES = {"genres": "categorical_list", "year": "numerical", "brand": "categorical"}


def _config(path: Path, columns: dict[str, str] = TYPES, **settings) -> OmegaConf:
    """dataset.item_features for the table at `path` with `columns` (name -> type)."""
    by_type = {kind: [name for name, of in columns.items() if of == kind] for kind in set(TYPES.values())}
    return OmegaConf.merge(OmegaConf.structured(ItemFeaturesConfig), {"path": str(path), **by_type, **settings})


def _random_table(rng: np.random.Generator, item_ids: np.ndarray) -> pd.DataFrame:
    """A feature row for a random part of `item_ids`, with empty lists, missing numbers and missing brands."""
    rows = rng.choice(item_ids, size=int(0.8 * len(item_ids)), replace=False)
    genres = [sorted(set(rng.choice(list("abcdefg"), size=rng.integers(0, 4)))) for _ in rows]
    return pd.DataFrame({
        "item_id": rows,
        "genres": ["|".join(values) for values in genres],
        "year": np.where(rng.random(len(rows)) < 0.2, np.nan, rng.integers(1950, 2020, len(rows))),
        "brand": np.where(rng.random(len(rows)) < 0.2, None, rng.choice(["x", "y", "z"], len(rows))),
    })


def _decoded(features, name: str, values: list) -> list[list]:
    """The values of each item's codes, in the order of the vocabulary."""
    codes = features.codes[name].reshape(len(features.codes[name]), -1)
    assert features.values[name] == values  # codes in the order of the sorted values
    return [sorted(values[code] for code in row if code != len(values)) for row in codes]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_features_are_encoded_per_item_of_the_vocabulary(tmp_path: Path, suffix: str):
    rng = np.random.default_rng()
    vocabulary = ItemVocabulary(np.sort(rng.choice(1000, size=40, replace=False)))
    table = _random_table(rng, vocabulary.item_ids)
    path = tmp_path / f"features{suffix}"
    if suffix == ".parquet":
        table.assign(genres=table["genres"].map(lambda text: text.split("|") if text else [])).to_parquet(path)
    else:
        table.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    features = read_item_features(_config(path), vocabulary)

    by_item = table.set_index("item_id")
    expected_genres = [sorted(by_item["genres"][item].split("|")) if item in by_item.index and by_item["genres"][item]
                       else [] for item in vocabulary.item_ids]
    assert _decoded(features, "genres", sorted({g for row in expected_genres for g in row})) == expected_genres
    brands = sorted(by_item["brand"].dropna().unique())
    expected_brands = [[by_item["brand"][item]] if item in by_item.index and by_item["brand"][item] is not None
                       else [] for item in vocabulary.item_ids]
    assert _decoded(features, "brand", brands) == expected_brands
    years = by_item["year"].reindex(vocabulary.item_ids).to_numpy()
    present = ~np.isnan(years)
    expected_years = np.where(present, (years - years[present].mean()) / years[present].std(), 0.0)
    np.testing.assert_allclose(features.numbers["year"], expected_years, atol=1e-5)
    assert features.matched == pytest.approx(by_item.index.isin(vocabulary.item_ids).mean() * len(table)
                                             / len(vocabulary))


def test_s3rec_beauty_attributes_cover_every_item_of_its_sequences():
    sequences, attributes = SHARED_DATA / "s3rec_amazon-beauty_seq.txt.gz", \
        SHARED_DATA / "s3rec_amazon-beauty_item2attributes.json.gz"
    if not attributes.is_file():
        pytest.skip("needs ../shared/data")
    vocabulary = ItemVocabulary.fit(item_sequences(sequences))
    features = read_item_features(_config(attributes, columns={"attributes": "categorical_list"}), vocabulary)
    assert features.matched == 1.0
    with gzip.open(attributes, "rt") as file:
        content = json.load(file)
    values = sorted({value for row in content.values() for value in row})
    assert _decoded(features, "attributes", values) == [sorted(content[str(item)]) for item in vocabulary.item_ids]


def test_movielens_movies_give_genres_and_years():
    movies, ratings = SHARED_DATA / "ml-1m_movies.dat.gz", SHARED_DATA / "ml-1m_ratings_users1-2998_PARTIAL.parquet"
    if not movies.is_file():
        pytest.skip("needs ../shared/data")
    vocabulary = ItemVocabulary(np.sort(pd.read_parquet(ratings)["item_id"].unique()))
    config = _config(movies, format="movielens", columns={"genres": "categorical_list", "year": "numerical"})
    features = read_item_features(config, vocabulary)
    assert features.matched == 1.0  # every rated movie is in movies.dat
    assert len(features.values["genres"]) == 18
    with gzip.open(movies, "rt") as file:
        lines = {int(line.split("::")[0]): line.strip().split("::") for line in file}
    genres = sorted({genre for _, _, text in lines.values() for genre in text.split("|")})
    assert _decoded(features, "genres", genres) == [sorted(lines[item][2].split("|")) for item in vocabulary.item_ids]
    years = np.array([int(lines[item][1][-5:-1]) for item in vocabulary.item_ids])
    np.testing.assert_allclose(features.numbers["year"], (years - years.mean()) / years.std(), atol=1e-4)


def _reference_rows(module: ItemFeatureEmbedding, id_rows: torch.Tensor, weights: dict) -> torch.Tensor:
    """Each row written out, one item and one feature at a time, with the parameters `weights` (float64)."""
    out = []
    for row in range(len(id_rows)):
        parts = []
        for index, feature in enumerate(module.features):
            if isinstance(feature, CategoricalFeature):
                table = weights[f"features.{index}.embedding.weight"]
                part = torch.zeros(table.shape[1], dtype=torch.float64)
                for code in feature.codes[row].reshape(-1).tolist():
                    if code != feature.cardinality:
                        part = part + table[code]
            else:
                number = float(feature.numbers[row])
                part = weights[f"features.{index}.linear.weight"][:, 0] * number \
                    + weights[f"features.{index}.linear.bias"]
            parts.append(part)
        if module.projection is None:
            out.append(id_rows[row] + sum(parts))
        else:
            joined = torch.cat([id_rows[row], *parts])
            out.append(weights["projection.weight"] @ joined + weights["projection.bias"])
    return torch.stack(out)


@pytest.mark.parametrize("aggregation", ["sum", "concat"])
def test_feature_rows_match_a_plain_reference_in_values_and_gradients(aggregation: str):
    rows, hidden = 11, 8
    spec = {"genres": {"type": "categorical_list", "cardinality": 5, "width": 3},
            "brand": {"type": "categorical", "cardinality": 4, "width": 1},
            "year": {"type": "numerical", "cardinality": 0, "width": 1}}
    module = ItemFeatureEmbedding(spec, rows, hidden, aggregation)
    for feature in module.features:  # random values; the last two rows have none (items without features)
        if isinstance(feature, CategoricalFeature):
            feature.codes.copy_(torch.randint(0, feature.cardinality + 1, feature.codes.shape))
            feature.codes[-2:] = feature.cardinality
            torch.nn.init.normal_(feature.embedding.weight)
            with torch.no_grad():
                feature.embedding.weight[feature.cardinality] = 0  # the padding row, as the models keep it
        else:
            feature.numbers.copy_(torch.randn(rows))
            feature.numbers[-2:] = 0
    id_rows = torch.randn(rows, hidden, requires_grad=True)
    upstream = torch.randn(rows, hidden, dtype=torch.float64)
    got = module(id_rows)
    (got.double() * upstream).sum().backward()

    weights = {name: p.detach().double().requires_grad_() for name, p in module.named_parameters()}
    reference_id_rows = id_rows.detach().double().requires_grad_()
    expected = _reference_rows(module, reference_id_rows, weights)
    (expected * upstream).sum().backward()
    torch.testing.assert_close(got.double(), expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(id_rows.grad.double(), reference_id_rows.grad, rtol=1e-5, atol=1e-5)
    for name, parameter in module.named_parameters():
        torch.testing.assert_close(parameter.grad.double(), weights[name].grad, rtol=1e-5, atol=1e-5)
    for feature in module.features:  # the padding row gets no gradient
        if isinstance(feature, CategoricalFeature):
            assert feature.embedding.weight.grad[feature.cardinality].abs().sum() == 0


def _features_model(name: str, head: str, table: pd.DataFrame, tmp_path: Path, n_items: int = 30,
                    item_ids: np.ndarray | None = None, columns: dict[str, str] = TYPES):
    """A model in eval mode with the features of `table` for items `item_ids` (default 0..n_items-1), their
    embeddings random as after training (a new model's start at zero)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "features.csv"
    table.to_csv(path, index=False)
    vocabulary = ItemVocabulary(np.arange(n_items) if item_ids is None else item_ids)
    features = read_item_features(_config(path, columns), vocabulary)
    params = OmegaConf.merge(OmegaConf.structured(ModelParams), {"hidden_size": 16, "max_seq_len": 10,
                                                                 "item_feature_head": head})
    model = build_model(name, n_items, params, features.spec())
    model.item_features.load_values(features)
    # A new model is the id-only one: its features add nothing until training gives them weights.
    torch.testing.assert_close(model.item_rows(), model.item_embedding.weight)
    with torch.no_grad():
        for feature in model.item_features.features:
            for parameter in feature.parameters():
                parameter.normal_(std=0.1)
            if hasattr(feature, "cardinality"):  # the padding code adds nothing, as in a trained model
                feature.embedding.weight[feature.cardinality].zero_()
    return model.eval(), params, features


@pytest.mark.parametrize("name", ["sasrec", "bert4rec"])
@pytest.mark.parametrize("head", ["id_only", "item_representation"])
def test_models_read_the_features_and_the_head_mode_decides_the_scores(tmp_path: Path, name: str, head: str):
    rng = np.random.default_rng()
    model, params, features = _features_model(name, head, _random_table(rng, np.arange(30)), tmp_path)
    history = torch.randint(0, 30, (4, 7))
    scores = model.score_next(history)
    rows = model.item_rows()  # [n_items + extra, H]: id rows and features
    assert not torch.allclose(rows[:30], model.item_embedding.weight[:30])
    if head == "item_representation":
        torch.testing.assert_close(model.head.weight, rows[:30])
        # The SwitchBack head keeps the tie and the features: its int8 scores are the float ones up to int8's error.
        int8 = copy.deepcopy(model)
        apply_accelerations(int8, OmegaConf.merge(OmegaConf.structured(Acceleration),
                                                  {"model": {"acceleration_config": {"head": "switchback_head"}}}))
        assert isinstance(int8.head, TiedSwitchBackHead) and int8.head.item_features is int8.item_features
        int8_scores = int8.score_next(history)
        assert ((int8_scores - scores).norm() / scores.norm()).item() < 2e-2
    else:
        assert not hasattr(model.head, "item_features") or model.head.item_features is None
    # A checkpoint holds the values: a model built from the stored spec scores the same.
    rebuilt = build_model(name, 30, params, model.architecture()["item_features"])
    rebuilt.load_state_dict(model.state_dict())
    torch.testing.assert_close(rebuilt.eval().score_next(history), scores)
    # Other feature values, other scores: the input reads them.
    other = build_model(name, 30, params, features.spec())
    other.load_state_dict(model.state_dict())
    other.item_features.features[0].codes.copy_(other.item_features.features[0].codes.roll(1, dims=0))
    assert not torch.allclose(other.eval().score_next(history), scores)


def test_bad_feature_tables_get_errors_that_name_the_file_and_column(tmp_path: Path):
    vocabulary = ItemVocabulary(np.arange(10))
    table = pd.DataFrame({"item_id": [1, 2, 3], "genres": ["a", "b|c", ""], "year": [1990, 1991, 1992],
                          "brand": ["x", "y", "x"]})

    def error_of(frame: pd.DataFrame, **settings) -> str:
        path = tmp_path / "features.csv"
        frame.to_csv(path, index=False)
        with pytest.raises((DataError, ConfigError)) as caught:
            read_item_features(_config(path, **settings), vocabulary)
        return str(caught.value)

    assert "column 'item_id' missing in features.csv" in error_of(table.rename(columns={"item_id": "movie"}))
    assert "set dataset.item_features.item_column" in error_of(table.rename(columns={"item_id": "movie"}))
    assert "column 'brand' declared in dataset.item_features.categorical is missing" in error_of(
        table.drop(columns="brand"))
    message = error_of(table.assign(year=["1990", "old", "1992"]))
    assert "'year' of features.csv is declared numerical but holds 'old' on line 3" in message
    assert "no item of features.csv is an item of the log" in error_of(table.assign(item_id=[100, 101, 102]))
    assert "item '2' has several rows" in error_of(table.assign(item_id=[1, 2, 2]))
    assert "'year' is declared more than once" in error_of(table, numerical=["year"], categorical=["year"])
    assert "declares no feature column" in error_of(table, columns={})
    (tmp_path / "features.xlsx").write_text("x")
    with pytest.raises(ConfigError, match="set dataset.item_features.format"):
        read_item_features(_config(tmp_path / "features.xlsx"), vocabulary)


def test_a_table_for_some_items_warns_with_the_share(tmp_path: Path, capsys):
    path = tmp_path / "features.csv"
    pd.DataFrame({"item_id": [1, 2, 3], "genres": ["a", "b", "c"], "year": [1, 2, 3], "brand": ["x", "y", "z"]}
                 ).to_csv(path, index=False)
    features = read_item_features(_config(path), ItemVocabulary(np.arange(12)))
    assert features.matched == 0.25
    assert "has features for 25.0% of the 12 items of the log" in capsys.readouterr().err


@pytest.mark.slow  # trains, then runs infer, embeddings and export
def test_training_with_features_then_infer_embeddings_and_export_read_them_from_the_checkpoint(tmp_path: Path):
    rng = np.random.default_rng()
    table = _random_table(rng, np.arange(120))
    table.to_csv(tmp_path / "features.csv", index=False)
    features = [f"dataset.item_features.path={tmp_path / 'features.csv'}",
                "dataset.item_features.categorical_list=[genres]", "dataset.item_features.numerical=[year]",
                "dataset.item_features.categorical=[brand]",
                "model=sasrec_synthetic", "model.params.model_params.item_feature_head=item_representation"]
    train = [*TINY_SYNTHETIC, "model.params.training_params.max_epochs=1", *features]
    result = run_main(tmp_path, *train)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CategoricalFeature" in result.stdout and "name='genres'" in result.stdout  # the printed model
    events = pd.DataFrame({"user_id": [1, 1, 2], "item_id": [3, 4, 5], "rating": 5, "timestamp": [1, 2, 1]})
    events.to_csv(tmp_path / "new.csv", index=False)
    # Without the feature table: the checkpoint holds the features.
    model = [*TINY_SYNTHETIC, "model=sasrec_synthetic"]
    infer = run_main(tmp_path, "infer", *model, f"mode.infer.input={tmp_path / 'new.csv'}")
    assert infer.returncode == 0, infer.stderr[-3000:]
    assert "item_feature_head=item_representation" in infer.stdout  # built as trained
    top = pd.read_parquet(tmp_path / "results" / "sasrec_synthetic" / "recommendations_infer.parquet")
    embeddings = run_main(tmp_path, "embeddings", *model, f"mode.embeddings.input={tmp_path / 'new.csv'}")
    assert embeddings.returncode == 0, embeddings.stderr[-3000:]
    exported = run_main(tmp_path, "export", *model, f"mode.export.output={tmp_path / 'export'}")
    assert exported.returncode == 0, exported.stderr[-3000:]  # export checks its files' scores against the model
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "export" / "model.onnx"))
    from replay_accelerated.training.trained_model import load_trained_model
    from conftest import compose

    trained, vocabulary = load_trained_model(compose(tmp_path, *model), None)
    history = torch.tensor([[trained.pad_id] * 18 + vocabulary.encode(pd.Series([3, 4])).tolist()])
    scores = session.run(None, {"history": history.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(scores, trained.score_next(history).numpy(), atol=1e-4)
    assert top[top["user_id"] == 1]["item_id"].iloc[0] == vocabulary.item_ids[int(np.argmax(
        np.where(np.isin(vocabulary.item_ids, [3, 4]), -np.inf, scores[0])))]


def _checkpoint(model, item_ids: np.ndarray, folder: Path) -> Path:
    """`model` saved as mode=train saves it: weights, stamp with its architecture, items.parquet beside."""
    folder.mkdir(parents=True)
    state = {f"model.{key}": value for key, value in model.state_dict().items()}
    stamp = {"fingerprint": None, "model": "sasrec", "n_items": model.n_items, "architecture": model.architecture()}
    torch.save({"state_dict": state, STAMP_KEY: stamp}, folder / "best.ckpt")
    pd.DataFrame({"item_id": item_ids}).to_parquet(folder / "items.parquet", index=False)
    return folder / "best.ckpt"


def test_warm_start_matches_feature_values_and_new_items_start_from_their_features(tmp_path: Path):
    rng = np.random.default_rng()
    old_ids, new_ids = np.arange(40), np.arange(10, 55)  # 10 items gone, 15 new
    table = _random_table(rng, np.arange(55))
    table.loc[table["item_id"] >= 40, "genres"] = "h|a"  # a genre value only the new catalog has
    old_table = table[table["item_id"] < 40]
    old, params, _ = _features_model("sasrec", "item_representation", old_table, tmp_path / "old", n_items=40,
                                     item_ids=old_ids)
    checkpoint = _checkpoint(old, old_ids, tmp_path / "old" / "checkpoint")
    new, _, features = _features_model("sasrec", "item_representation", table, tmp_path / "new", n_items=45,
                                       item_ids=new_ids)
    def genres(model):
        return next(feature for feature in model.item_features.features if feature.name == "genres")

    fresh_genres = genres(new).embedding.weight.detach().clone()
    cfg = OmegaConf.create({"model": {"name": "sasrec", "save_name": "x", "params": {
        "model_params": OmegaConf.to_container(params), "training_params": {"init_from": str(checkpoint)}}},
        "trust_checkpoint": False})
    warm_start(new, ItemVocabulary(new_ids), cfg)

    old_genres, new_genres = old.item_features.spec["genres"]["values"], features.values["genres"]
    weight = genres(new).embedding.weight.detach()
    for code, value in enumerate(new_genres):  # matched by value; the new value keeps its fresh row
        expected = genres(old).embedding.weight[old_genres.index(value)] if value in old_genres \
            else fresh_genres[code]
        torch.testing.assert_close(weight[code], expected.detach())
    assert "h" in new_genres and "h" not in old_genres
    new_items = np.flatnonzero(new_ids >= 40)
    assert new.item_embedding.weight[new_items].abs().sum() == 0  # a new item is its features
    torch.testing.assert_close(new.item_rows()[new_items], new.item_features(
        torch.zeros(len(new_items), 16), torch.from_numpy(new_items)))
    known = np.intersect1d(old_ids, new_ids)  # known items keep their id rows
    torch.testing.assert_close(new.item_embedding.weight[np.searchsorted(new_ids, known)],
                               old.item_embedding.weight[np.searchsorted(old_ids, known)])

    other, _, _ = _features_model("sasrec", "item_representation", table.drop(columns="brand"), tmp_path / "other",
                                  n_items=45, item_ids=new_ids, columns={"genres": "categorical_list",
                                                                         "year": "numerical"})
    with pytest.raises(ConfigError, match="trained with the item features"):
        warm_start(other, ItemVocabulary(new_ids), cfg)


def test_synthetic_features_give_about_two_genres_of_twenty_and_a_price_to_every_item():
    vocabulary = ItemVocabulary(np.arange(5000))
    config = OmegaConf.merge(OmegaConf.structured(ItemFeaturesConfig), {
        "format": "synthetic", "categorical_list": ["genres"], "numerical": ["price"]})
    features = read_item_features(config, vocabulary)
    assert features.matched == 1.0 and len(features.values["genres"]) == 20
    per_item = (features.codes["genres"] != 20).sum(axis=1)
    assert per_item.min() >= 1 and 1.8 < per_item.mean() < 2.2
    assert abs(features.numbers["price"].mean()) < 1e-3  # standardised


def test_movielens_genres_come_from_the_ratings_archive_without_a_path(tmp_path: Path, server):
    import hashlib
    import zipfile

    from conftest import compose
    from replay_accelerated.data.pipeline import prepare_data

    rng = np.random.default_rng()
    ratings = "".join(f"{user}::{item}::5::{1_000_000 + 1000 * step + user}\n" for user in range(1, 61)
                      for step, item in enumerate(rng.choice(np.arange(1, 31), size=15, replace=False)))
    genres = ["Comedy", "Drama", "Children's", "Sci-Fi"]
    movies = "".join(f"{item}::Café {item} ({1950 + item})::{'|'.join(rng.choice(genres, 2, replace=False))}\n"
                     for item in range(1, 31))
    archive = server.root / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("ml-1m/ratings.dat", ratings)
        zip_file.writestr("ml-1m/movies.dat", movies.encode("latin-1"))  # as GroupLens ships it
    checksum = "md5:" + hashlib.md5(archive.read_bytes()).hexdigest()
    cfg = compose(tmp_path, "dataset=movielens_1m", f"dataset.url={server.url('ml-1m.zip')}",
                  f"dataset.checksum={checksum}", "dataset/item_features=movielens")
    data = prepare_data(cfg.dataset, Path(cfg.paths.data_dir))
    features = data.item_features
    assert features.matched == 1.0 and features.values["genres"] == sorted(genres)
    lines = {int(line.split("::")[0]): line.split("::") for line in movies.splitlines()}
    assert _decoded(features, "genres", sorted(genres)) == [sorted(lines[item][2].split("|"))
                                                           for item in data.vocabulary.item_ids]
    years = np.array([1950 + item for item in data.vocabulary.item_ids])
    np.testing.assert_allclose(features.numbers["year"], (years - years.mean()) / years.std(), atol=1e-4)


def test_movielens_features_without_a_path_need_a_movielens_dataset(main_in_process):
    result = main_in_process("dataset=synthetic", "dataset/item_features=movielens", "validate_only=true")
    assert result.returncode == 2
    assert "config key 'dataset.item_features.path'" in result.stderr and "movies file" in result.stderr


def test_replay_nn_sasrec_reads_each_events_feature_values_as_ours(tmp_path: Path):
    from replay.preprocessing.label_encoder import LabelEncodingRule

    from conftest import compose
    from replay_accelerated.data.pipeline import prepare_data
    from replay_accelerated.training.replay_baseline import ITEM_SEQUENCE, _nn_pipeline

    rng = np.random.default_rng()
    _random_table(rng, np.arange(120)).to_csv(tmp_path / "features.csv", index=False)
    cfg = compose(tmp_path, *TINY_SYNTHETIC, "model=sasrec_synthetic", "model.implementation=replay_nn",
                  f"dataset.item_features.path={tmp_path / 'features.csv'}", "dataset.item_features.categorical=[brand]",
                  "dataset.item_features.categorical_list=[genres]", "dataset.item_features.numerical=[year]")
    data = prepare_data(cfg.dataset, Path(cfg.paths.data_dir))
    features = data.item_features
    pipeline = _nn_pipeline(data.splits, cfg.model.params.model_params, cfg.model.params.training_params,
                            {"accelerator": "cpu"}, tmp_path, features, data.vocabulary)
    assert set(pipeline.module.model.body.embedder.feature_embedders) == {ITEM_SEQUENCE, "brand", "genres", "year"}

    # RePlay's item index -> original id, as its label encoder (fitted as the pipeline fits it) maps them
    known = pd.concat([data.splits.train_events, data.splits.validation_events])
    original = LabelEncodingRule("item_id", handle_unknown="drop").fit(known).get_inverse_mapping()
    batch = pipeline.prepare(next(pipeline.training_batches()), torch.device("cpu"))
    tensors, real = batch["feature_tensors"], batch["padding_mask"]  # [B, L]; genres [B, L, longest list]
    genres_padding = len(features.values["genres"])
    for row, position in zip(*np.nonzero(real.numpy())):
        ours = data.vocabulary.encode(pd.Series([original[int(tensors[ITEM_SEQUENCE][row, position])]]))[0]
        genres = tensors["genres"][row, position]
        assert sorted(genres[genres != genres_padding].tolist()) == sorted(
            code for code in features.codes["genres"][ours] if code != genres_padding)
        assert int(tensors["brand"][row, position]) == features.codes["brand"][ours]
        assert float(tensors["year"][row, position]) == pytest.approx(features.numbers["year"][ours])
    assert (tensors["genres"][~real] == genres_padding).all() and real.sum() > 10


@pytest.mark.slow  # trains RePlay's model
def test_replay_nn_sasrec_trains_with_item_features_as_a_bench_row(tmp_path: Path):
    _random_table(np.random.default_rng(), np.arange(120)).to_csv(tmp_path / "features.csv", index=False)
    result = run_main(tmp_path, *TINY_SYNTHETIC, "model=sasrec_synthetic", "model.implementation=replay_nn",
                      "model.params.training_params.max_epochs=1", f"dataset.item_features.path={tmp_path / 'features.csv'}",
                      "dataset.item_features.categorical_list=[genres]", "dataset.item_features.numerical=[year]")
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "results" / "sasrec_synthetic" / "run.json").read_text())
    assert run["data"]["item_features"] == {"genres": "categorical_list", "year": "numerical"}
    assert run["test_metrics"]["ndcg@10"] > 0


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("events", [(2, 5), (8, 10)])  # fewer events than the 31 token rows, and more
def test_each_events_row_or_every_items_row_embed_the_same(tmp_path: Path, events: tuple[int, int], training: bool):
    # In training embed() computes each event's row where a batch has fewer events than items, else every item's row.
    rng = np.random.default_rng()
    model, _, _ = _features_model("sasrec", "id_only", _random_table(rng, np.arange(30)), tmp_path)
    model.train(training)
    item_ids = torch.randint(0, 31, events)
    expected = torch.nn.functional.embedding(item_ids, model.item_rows()) + model.position_embedding(
        torch.arange(10 - events[1], 10))
    torch.testing.assert_close(model.embed(item_ids), expected)
