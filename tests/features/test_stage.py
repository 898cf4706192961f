import json

import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.export.release import export
from pipeline.features import stage
from pipeline.features.extract import feature_set
from pipeline.features.stage import extract_rows, features, write_feature_rows
from pipeline.generation.stage import generate
from pipeline.prompts.stage import plan
from pipeline.runner import make_context
from pipeline.testing import sine, white_noise

RATE = 44_100


def _clips(folder, n):
    clips = []
    for i in range(n):
        path = folder / f"clip-{i:02d}.flac"
        audio = sine(110 * (i + 1), 0.5, dbfs=-12) + white_noise(0.5, seed=i, dbfs=-70)
        sf.write(path, audio, RATE, format="FLAC")
        clips.append((f"clip-{i:02d}", path))
    return clips


@pytest.mark.slow  # starts worker processes
def test_a_process_pool_gives_the_same_rows_in_the_same_order(tmp_path):
    clips = _clips(tmp_path, 9)
    extractor = feature_set("basic")
    write_feature_rows(extract_rows(extractor, clips, workers=1), tmp_path / "one.parquet")
    write_feature_rows(extract_rows(extractor, clips, workers=2), tmp_path / "two.parquet")
    one, two = pq.read_table(tmp_path / "one.parquet"), pq.read_table(tmp_path / "two.parquet")
    assert one.equals(two)
    assert one.column("clip_id").to_pylist() == [c for c, _ in clips]
    centroids = one.column("spectral_centroid_hz_mean").to_pylist()
    assert centroids == sorted(centroids) and len(set(centroids)) == 9  # each clip's own, rising tone


def test_rows_are_streamed_in_row_groups_and_the_file_appears_whole(tmp_path, monkeypatch):
    monkeypatch.setattr(stage, "ROW_GROUP", 2)
    clips = _clips(tmp_path, 5)
    assert write_feature_rows(extract_rows(feature_set("basic"), clips, 1), tmp_path / "f.parquet") == 5
    assert pq.ParquetFile(tmp_path / "f.parquet").num_row_groups == 3

    def failing():
        yield from extract_rows(feature_set("basic"), clips[:2], 1)
        raise RuntimeError("worker died")

    with pytest.raises(RuntimeError, match="worker died"):
        write_feature_rows(failing(), tmp_path / "g.parquet")
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".flac") == ["f.parquet"]  # no half file


def test_an_undecodable_clip_names_its_file(tmp_path):
    (tmp_path / "bad.flac").write_bytes(b"not flac")
    with pytest.raises(RuntimeError, match=r"cannot decode .*bad.flac.*rerun the generate stage"):
        list(extract_rows(feature_set("basic"), [("bad", tmp_path / "bad.flac")], 1))


def test_quality_gates_drop_or_keep_flagged_clips_and_the_release_counts_them(tmp_path):
    from pipeline.testing import fake_finished_run

    ctx = fake_finished_run(tmp_path, n_clips=3, silent=(0,), clipped=(1,),
                            **{"features.gates.clipped": "keep", "features.gates.silent": "drop"})
    silent, clipped, normal = pq.read_table(ctx.root / "prompts.parquet").column("clip_id").to_pylist()
    release = export(ctx)
    table = pq.read_table(release / "data")
    assert sorted(table.column("clip_id").to_pylist()) == sorted([clipped, normal])  # silent one dropped
    flags = dict(zip(table.column("clip_id").to_pylist(), table.column("is_clipped").to_pylist(), strict=True))
    assert flags == {clipped: True, normal: False}
    quality = json.loads((release / "manifest.json").read_text())["quality"]
    assert quality["clips"] == 3 and quality["dropped"] == 1
    assert quality["flagged"] == {"silent": 1, "clipped": 1, "too_short": 0, "non_finite": 0}
    assert "| `silent` | 1 | drop |" in (release / "README.md").read_text()


@pytest.mark.slow  # plan, generate and features stages
def test_changing_a_threshold_reruns_features_but_changing_workers_does_not(small_config):
    ctx = make_context(small_config(), "2026-01-01")
    plan(ctx)
    generate(ctx, 0)
    features(ctx, 0)
    path = ctx.shard_dir("features", 0) / "features.parquet"
    first = path.stat().st_mtime_ns
    features(make_context(small_config(**{"features.workers": 2}), "2026-01-01"), 0)
    assert path.stat().st_mtime_ns == first
    features(make_context(small_config(**{"features.silence_dbfs": -1.0}), "2026-01-01"), 0)
    assert pq.read_table(path).column("is_silent").to_pylist() == [True, True]
