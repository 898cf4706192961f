"""Export, its gates, reports, publishing and verify on a fake finished run: seconds, no Jukebox, no encoder."""

import json

import pyarrow.parquet as pq
import pytest

from pipeline.errors import LeakCheckFailed, PrivateDataInRelease, ReleaseConflict
from pipeline.export.card import _calibration_text
from pipeline.export.release import export
from pipeline.export.verify import verify_release
from pipeline.testing import fake_finished_run


def test_leaks_unscorable_and_silent_clips_never_reach_the_release(tmp_path):
    ctx = fake_finished_run(tmp_path, n_clips=6, leaked=(1,), unscorable=(2,), silent=(3,))
    release = export(ctx)
    clip_ids = pq.read_table(ctx.root / "prompts.parquet").column("clip_id").to_pylist()
    exported = sorted(pq.read_table(release / "data").column("clip_id").to_pylist())
    assert exported == sorted(clip_ids[i] for i in (0, 4, 5))
    assert sorted(p.stem for p in (release / "audio").iterdir()) == exported
    report = json.loads((release / "privacy_report.json").read_text())
    counts = report["counts"]
    assert (counts["clips"], counts["leak"], counts["unscorable"], counts["rejected"]) == (6, 1, 1, 2)
    assert report["rejection_rate"] == pytest.approx(2 / 6)
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["quality"]["dropped"] == 1 and manifest["quality"]["flagged"]["silent"] == 1
    assert verify_release(release) == []


def test_copies_never_reach_the_release_and_count_against_the_reject_rate(tmp_path):
    ctx = fake_finished_run(tmp_path, n_clips=5, copied=(0, 3))
    release = export(ctx)
    clip_ids = pq.read_table(ctx.root / "prompts.parquet").column("clip_id").to_pylist()
    assert sorted(pq.read_table(release / "data").column("clip_id").to_pylist()) == sorted(clip_ids[i] for i in (1, 2, 4))
    report = json.loads((release / "privacy_report.json").read_text())
    assert (report["counts"]["copy"], report["counts"]["rejected"], report["rejection_rate"]) == (2, 2, 0.4)
    copy = report["copy_check"]
    assert copy["applies"] and copy["rejected_first_pass"] == 2 and copy["clips_judged"] == 5
    assert copy["relative_distance_quantiles"]["0.5"] == 1.5  # 3.0 / the closest held-out recording's 2.0
    printed = copy["near_copy_detector"]  # the fingerprint detector: aggregates only
    assert (printed["max_ber"], printed["corpus_recordings_fingerprinted"], printed["clips_fingerprinted"],
            printed["lowest_ber"]) == (0.13, 7, 5, 0.05)
    assert "5 clip(s) were long enough to fingerprint (4.6 s), against 7 corpus" in (release / "README.md").read_text()
    assert "2 were rejected on first sampling (`on_copy: drop`) and 2 remain excluded" in (release / "README.md").read_text()
    strict = fake_finished_run(tmp_path / "strict", n_clips=5, copied=(0, 3), **{"privacy.max_reject_rate": 0.2})
    with pytest.raises(LeakCheckFailed, match="rejected 2 of 5 clips"):
        export(strict)


def test_a_rejection_rate_over_the_bound_publishes_nothing(tmp_path):
    ctx = fake_finished_run(tmp_path, n_clips=4, leaked=(0, 1), **{"privacy.max_reject_rate": 0.25})
    with pytest.raises(LeakCheckFailed, match=r"rejected 2 of 4 clips \(rate 0.500 > privacy.max_reject_rate 0.25\)"):
        export(ctx)
    assert not ctx.release_dir.exists() and not list(ctx.release_dir.parent.glob(".staging-*"))


def test_a_recall_shortfall_is_stated_in_the_card_and_the_report(tmp_path):
    ctx = fake_finished_run(tmp_path, recall_shortfall="the leak check reaches recall 0.900 (target 0.95)")
    release = export(ctx)
    card = (release / "README.md").read_text()
    assert "**Target recall not reached.** the leak check reaches recall 0.900" in card
    report = json.loads((release / "privacy_report.json").read_text())
    assert report["recall_target_met"] is False and report["calibration"]["recall"] == 0.9
    assert json.loads((release / "manifest.json").read_text())["leak_check"]["recall_target_met"] is False
    assert "| clean | 1.0 | 0.72-1.0 | 10 |" in card
    assert report["calibration"]["threshold_set_by"] == ["other voices, clean"]
    assert "the impostor trials that set it: other voices, clean. The impostor trials come from 14 cohort voices; " \
        "calibrated without any one of them, the threshold would lie between 0.93 and 1.0 (recall 1.0)" in card
    assert report["calibration"]["cohort_jackknife"] == {"cohort_voices": 14, "threshold": [0.93, 1.0],
                                                         "recall": [1.0, 1.0]}
    report["calibration"]["cohort_jackknife"]["recall"] = [0.88, 0.97]
    assert "(recall between 0.88 and 0.97)" in _calibration_text(report)
    report["calibration"]["cohort_jackknife"] = {}  # fewer than two cohort voices: nothing to say
    assert "cohort voices" not in _calibration_text(report)


def test_a_version_is_never_rewritten_and_private_strings_stop_publishing(tmp_path):
    ctx = fake_finished_run(tmp_path, description="A pop dataset.")
    release = export(ctx)
    before = {p: p.stat().st_mtime_ns for p in release.rglob("*")}
    assert export(ctx) == release and {p: p.stat().st_mtime_ns for p in release.rglob("*")} == before
    other = fake_finished_run(tmp_path / "other", n_clips=5, version="2026-03-02",
                              description="Sung like spk_alpha.")  # a reference speaker id in a public field
    with pytest.raises(PrivateDataInRelease, match="README.md: holds a value of a reference speaker id"):
        export(other)
    assert not other.release_dir.exists()
    changed = fake_finished_run(tmp_path / "changed", n_clips=5, description="A pop dataset.")
    changed.release_dir.parent.mkdir(parents=True, exist_ok=True)
    import shutil

    shutil.copytree(release, changed.release_dir)
    with pytest.raises(ReleaseConflict, match="already exists with different content"):
        export(changed)


def _rehash(release, **manifest_changes):
    """Rewrite the manifest's file list and SHA256SUMS after a test edited files (as an old release would be)."""
    import hashlib

    def digest(name):
        return hashlib.sha256((release / name).read_bytes()).hexdigest()

    manifest = json.loads((release / "manifest.json").read_text())
    manifest["files"] = [{**e, "sha256": digest(e["path"]), "size": (release / e["path"]).stat().st_size}
                         for e in manifest["files"]]
    manifest.update(manifest_changes)
    for key in [k for k, v in manifest_changes.items() if v is None]:
        del manifest[key]
    (release / "manifest.json").write_text(json.dumps(manifest))
    files = sorted(str(p.relative_to(release)) for p in release.rglob("*") if p.is_file() and p.name != "SHA256SUMS")
    (release / "SHA256SUMS").write_text("".join(f"{digest(n)}  {n}\n" for n in files))


def test_every_clip_is_labelled_ai_generated_in_its_tags_its_row_and_the_card(tmp_path):
    from mutagen.flac import FLAC  # a reader nobody here wrote

    ctx = fake_finished_run(tmp_path, n_clips=4)
    release = export(ctx)
    rows = pq.read_table(release / "data").to_pylist()
    assert rows and all(row["ai_generated"] is True for row in rows)
    for row in rows:
        tags = FLAC(release / row["audio"]["path"]).tags
        assert tags["AI_GENERATED"] == ["true"] and tags["CLIP_ID"] == [row["clip_id"]]
        assert tags["DIGITAL_SOURCE_TYPE"] == ["http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"]
        assert tags["DATASET"] == ["default"] and tags["DATASET_VERSION"] == [ctx.version]
        assert tags["MODEL_SHA256"] == [row["model_weights_sha256"]] and tags["GENERATOR"][0].startswith("synthaudio ")
    assert "Every clip is AI-generated (synthetic) audio" in (release / "README.md").read_text()
    assert json.loads((release / "manifest.json").read_text())["schema_version"] == 2
    assert verify_release(release) == []

    from pipeline.export.flac_tags import write_tags

    unlabelled = release / rows[0]["audio"]["path"]
    unlabelled.write_bytes(write_tags(unlabelled.read_bytes(), {"TITLE": "field recording"}))
    _rehash(release)
    assert verify_release(release) == [f"{rows[0]['audio']['path']}: FLAC tags do not label it as this release's "
                                       "AI-generated clip (AI_GENERATED, DIGITAL_SOURCE_TYPE, DATASET, DATASET_VERSION, "
                                       "CLIP_ID missing or different)"]


def test_a_release_made_before_the_label_still_verifies_and_a_newer_one_says_so(tmp_path):
    import pyarrow as pa

    from pipeline.export.flac_tags import write_tags
    from pipeline.export.schema import release_schema

    release = export(fake_finished_run(tmp_path, n_clips=3))
    for shard in (release / "data").glob("*.parquet"):  # layout 1: no ai_generated column, no tags
        table = pq.read_table(shard)
        table = table.drop_columns(["ai_generated"]).cast(release_schema(1))
        pq.write_table(pa.Table.from_batches(table.to_batches(), release_schema(1)), shard)
    for flac in (release / "audio").iterdir():
        flac.write_bytes(write_tags(flac.read_bytes(), {}))
    _rehash(release, schema_version=None)
    assert verify_release(release) == []
    _rehash(release, schema_version=99)
    assert any("schema_version 99 is newer than this synthaudio reads" in p for p in verify_release(release))
