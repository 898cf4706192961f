import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import BadInput
from pipeline.prompts.sampler import (
    PROMPT_SCHEMA, PromptSpec, assign_split, assign_splits, clip_id, quota_sequence, sample_prompts, uniforms,
)
from pipeline.prompts.stage import plan, preview, shard_bounds, shard_prompts
from pipeline.runner import make_context
from pipeline.workspace import read_json

SPEC = PromptSpec(dataset="demo", version="2026-01-01", genres={"pop": 3, "rock": 1, "jazz": 1.5},
                  artists={"aurora_lane": 1, "cinder_kid": 1}, lyrics=("one line", "another line"),
                  durations=(1.0, 2.0), temperatures=(0.9,),
                  splits={"train": 0.8, "validation": 0.1, "test": 0.1})


def test_same_seed_same_prompts_other_seed_other_prompts():
    a, b, c = sample_prompts(SPEC, 1, 50), sample_prompts(SPEC, 1, 50), sample_prompts(SPEC, 2, 50)
    assert a.equals(b)
    assert a.column("artist").to_pylist() != c.column("artist").to_pylist()
    assert a.schema.equals(PROMPT_SCHEMA)


def test_prefix_stable_when_the_dataset_grows():
    small, large = sample_prompts(SPEC, 5, 100), sample_prompts(SPEC, 5, 200)
    assert large.slice(0, 100).equals(small)


def test_uniforms_are_prefix_stable_and_uniform():
    u = uniforms(9, "x", 20_000)
    np.testing.assert_array_equal(uniforms(9, "x", 100), u[:100])
    assert 0 <= u.min() and u.max() < 1 and abs(u.mean() - 0.5) < 0.01
    assert not np.array_equal(uniforms(9, "y", 100), u[:100])


def test_clip_ids_are_readable_and_unique():
    table = sample_prompts(SPEC, 5, 30)
    ids = table.column("clip_id").to_pylist()
    assert ids[7] == "demo-2026-01-01-000007" == clip_id("demo", "2026-01-01", 7)
    assert len(set(ids)) == 30 and table.column("clip_index").to_pylist() == list(range(30))


def test_genre_counts_are_exact_quotas():
    counts = Counter(sample_prompts(SPEC, 0, 110).column("genre").to_pylist())
    assert counts == {"pop": 60, "jazz": 30, "rock": 20}  # 110 x 3/5.5, 1.5/5.5, 1/5.5: whole numbers


def test_durations_and_temperatures_come_from_their_lists():
    table = sample_prompts(SPEC, 0, 400)
    durations = Counter(table.column("duration_s").to_pylist())
    assert set(durations) == {1.0, 2.0} and min(durations.values()) > 150


def test_captions_carry_their_fields():
    row = sample_prompts(SPEC, 3, 1).to_pylist()[0]
    assert row["caption"] == f"a {row['genre']} piece in the style of {row['artist'].replace('_', ' ')}, " \
                             f"with sung lyrics, {row['duration_s']:g} seconds"
    instrumental = sample_prompts(PromptSpec(**{**SPEC.__dict__, "lyrics": (), "caption_template": "{vocals}"}), 3, 1)
    assert instrumental.to_pylist()[0]["lyrics"] == "" and instrumental.to_pylist()[0]["caption"] == "instrumental"


weights_strategy = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e", "f"]),
                                   st.floats(0.01, 100, allow_nan=False), min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(weights=weights_strategy, n=st.integers(1, 400), seed=st.integers(0, 1000))
def test_every_prefix_is_within_quota_and_counts_never_decrease(weights, n, seed):
    sequence = quota_sequence(weights, n, seed)
    total = sum(weights.values())
    counts = Counter()
    for h, genre in enumerate(sequence, 1):
        counts[genre] += 1
        for name, w in weights.items():
            share = w * h / total
            assert math.floor(share - 1e-9) <= counts[name] <= math.ceil(share + 1e-9), (name, h)
    assert quota_sequence(weights, n // 2, seed) == sequence[: n // 2]


@settings(max_examples=50, deadline=None)
@given(index=st.integers(0, 10**6), train=st.floats(0.05, 0.9))
def test_split_depends_only_on_clip_id(index, train):
    splits = {"train": train, "validation": (1 - train) / 2, "test": (1 - train) / 2}
    split = assign_split("demo", "v", index, splits)
    assert split in splits
    # The same id gets the same split whatever else is assigned with it, wherever it sits in the batch.
    others = np.array([index + 1, 7, 10**6 + 3, max(0, index - 1)])
    assert assign_splits("demo", "v", np.concatenate([others, [index]]), splits)[-1] == split
    assert assign_splits("demo", "v", np.concatenate([[index], others]), splits)[0] == split
    # Growing the train fraction only ever moves clips into train, never out of it.
    larger = {"train": min(1.0, train + 0.05), "validation": (1 - min(1.0, train + 0.05)) / 2,
              "test": (1 - min(1.0, train + 0.05)) / 2}
    if split == "train":
        assert assign_split("demo", "v", index, larger) == "train"
    assert sample_prompts(SPEC, 0, 3).column("split").to_pylist() == [
        assign_split("demo", "2026-01-01", i, SPEC.splits) for i in range(3)]


def test_split_is_stable_when_the_dataset_grows():
    small, large = sample_prompts(SPEC, 5, 50), sample_prompts(SPEC, 5, 500)
    assert large.column("split").to_pylist()[:50] == small.column("split").to_pylist()


def test_split_fractions_are_followed():
    counts = Counter(sample_prompts(SPEC, 0, 5000).column("split").to_pylist())
    assert 0.77 < counts["train"] / 5000 < 0.83 and counts["validation"] > 350 and counts["test"] > 350


@settings(max_examples=100, deadline=None)
@given(n_clips=st.integers(1, 500), n_shards=st.integers(1, 50))
def test_shard_bounds_partition_the_clips(n_clips, n_shards):
    if n_shards > n_clips:
        return
    bounds = shard_bounds(n_clips, n_shards)
    assert bounds[0][0] == 0 and bounds[-1][1] == n_clips
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [stop - start for start, stop in bounds]
    assert max(sizes) - min(sizes) <= 1


def test_plan_writes_prompts_shards_and_report(small_config):
    ctx = make_context(small_config(n_clips=5, n_shards=2), "2026-01-01")
    assert plan(ctx) == [0, 1]
    assert shard_prompts(ctx, 0).num_rows == 3 and shard_prompts(ctx, 1).num_rows == 2
    report = read_json(ctx.root / "plan.json")["report"]
    assert sum(report["genres"].values()) == 5 and report["lyrics"]["lines_in"] == 6
    with pytest.raises(BadInput, match="--shard 2"):
        shard_prompts(ctx, 2)


def test_unknown_artist_is_refused_with_suggestions(small_config):
    ctx = make_context(small_config(**{"prompts.artists": {"aurora_lame": 1}}), "2026-01-01")
    with pytest.raises(BadInput, match=r"prompts.artists: .*'aurora_lame' \(closest: aurora_lane"):
        plan(ctx)
    assert not (ctx.root / "prompts.parquet").exists()


def test_preview_prints_rows_and_counts_and_writes_nothing(small_config):
    ctx = make_context(small_config(n_clips=40), "2026-01-01")
    text = preview(ctx, 5)
    assert text.count("default-2026-01-01-0000") == 5
    assert "genre counts: jazz 10 (25.0%), pop 20 (50.0%), rock 10 (25.0%)" in text
    assert not ctx.root.exists()
