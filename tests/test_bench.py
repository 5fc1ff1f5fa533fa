"""The all-pairs design of the pairwise benchmark sweep."""

import itertools

from replay_accelerated.benchmark.bench import pairwise_variants


def test_pairwise_variants_cover_every_value_pair_with_fewer_runs_than_the_product():
    options = {
        "loss": {name: [f"loss={name}"] for name in ("CE", "CE_sampled", "BCE", "SCE", "CCE")},
        "act_fn": {name: [f"act={name}"] for name in ("gelu", "selu", "silu")},
        "head": {name: [f"head={name}"] for name in ("linear", "swichback", "tied")},
        "precision": {name: [f"precision={name}"] for name in ("fp32", "bf16")},
    }
    variants = pairwise_variants(options)
    assert len(variants) < 5 * 3 * 3 * 2
    chosen = [dict(part.split("=") for part in name.split(",")) for name in variants]
    for a, b in itertools.combinations(options, 2):
        for va, vb in itertools.product(options[a], options[b]):
            assert any(c[a] == va and c[b] == vb for c in chosen), (a, va, b, vb)
    for name, overrides in variants.items():  # each variant carries its values' overrides
        pairs = (part.split("=") for part in name.split(","))
        assert overrides == [override for option, value in pairs for override in options[option][value]]
