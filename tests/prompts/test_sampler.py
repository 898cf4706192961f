from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.errors import BadInput
from pipeline.prompts.sampler import PROMPT_SCHEMA, PromptSpec, assign_split, clip_id, sample_prompts
from pipeline.prompts.stage import plan, shard_bounds, shard_prompts
from pipeline.runner import make_context

SPEC = PromptSpec(dataset="demo", version="2026-01-01", genres={"pop": 3, "rock": 1},
                  artists={"aurora_lane": 1, "cinder_kid": 1}, lyrics=("one line", "another line"),
                  duration_s=2.0, temperature=0.9, splits={"train": 0.8, "validation": 0.1, "test": 0.1})


def test_same_seed_same_prompts_other_seed_other_prompts():
    a, b, c = sample_prompts(SPEC, 1, 50), sample_prompts(SPEC, 1, 50), sample_prompts(SPEC, 2, 50)
    assert a.equals(b)
    assert a.column("genre").to_pylist() != c.column("genre").to_pylist()
    assert a.schema.equals(PROMPT_SCHEMA)


def test_prefix_stable_when_the_dataset_grows():
    small, large = sample_prompts(SPEC, 5, 100), sample_prompts(SPEC, 5, 200)
    assert large.slice(0, 100).equals(small)


def test_clip_ids_are_readable_and_unique():
    table = sample_prompts(SPEC, 5, 30)
    ids = table.column("clip_id").to_pylist()
    assert ids[7] == "demo-2026-01-01-000007" == clip_id("demo", "2026-01-01", 7)
    assert len(set(ids)) == 30


def test_genre_frequencies_follow_weights():
    counts = Counter(sample_prompts(SPEC, 0, 4000).column("genre").to_pylist())
    assert 0.72 < counts["pop"] / 4000 < 0.78


def test_captions_carry_their_fields():
    row = sample_prompts(SPEC, 3, 1).to_pylist()[0]
    assert row["genre"] in row["caption"] and row["artist"].replace("_", " ") in row["caption"]
    assert "2 seconds" in row["caption"] and "with sung lyrics" in row["caption"]
    instrumental = sample_prompts(PromptSpec(**{**SPEC.__dict__, "lyrics": ()}), 3, 1).to_pylist()[0]
    assert instrumental["lyrics"] == "" and "instrumental" in instrumental["caption"]


@settings(max_examples=50, deadline=None)
@given(index=st.integers(0, 10**6), train=st.floats(0.05, 0.9))
def test_split_depends_only_on_clip_id(index, train):
    splits = {"train": train, "validation": (1 - train) / 2, "test": (1 - train) / 2}
    cid = clip_id("demo", "v", index)
    assert assign_split(cid, splits) == assign_split(cid, dict(splits))
    assert assign_split(cid, splits) in splits


def test_split_fractions_are_followed():
    counts = Counter(assign_split(clip_id("d", "v", i), SPEC.splits) for i in range(5000))
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


def test_plan_writes_prompts_and_shards(small_config):
    ctx = make_context(small_config(n_clips=5, n_shards=2), "2026-01-01")
    assert plan(ctx) == [0, 1]
    assert shard_prompts(ctx, 0).num_rows == 3 and shard_prompts(ctx, 1).num_rows == 2
    with pytest.raises(BadInput, match="--shard 2"):
        shard_prompts(ctx, 2)


def test_unknown_artist_is_refused_with_suggestions(small_config):
    ctx = make_context(small_config(**{"prompts.artists": {"aurora_lame": 1}}), "2026-01-01")
    with pytest.raises(BadInput, match=r"prompts.artists: .*'aurora_lame' \(closest: aurora_lane"):
        plan(ctx)
    assert not (ctx.root / "prompts.parquet").exists()
