"""Export, its gates, reports, publishing and verify on a fake finished run: seconds, no Jukebox, no encoder."""

import json

import pyarrow.parquet as pq
import pytest

from pipeline.errors import LeakCheckFailed, PrivateDataInRelease, ReleaseConflict
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
