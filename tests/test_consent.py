"""Consent withdrawn: lineage finds what a speaker's recordings went into; withdraw marks the releases (catalog,
LATEST, list, show, the served page) and deletes the private artefacts derived from them."""

import json
import shutil
import subprocess
import sys
import urllib.request

import pytest

from pipeline.export.publish import update_catalog
from pipeline.export.release import export
from pipeline.export.verify import verify_release
from pipeline.testing import REPO_ROOT, fake_finished_run, run_cli, write_config


def test_a_withdrawn_release_leaves_the_catalog_latest_and_is_listed_with_its_reason(tmp_path):
    older = export(fake_finished_run(tmp_path, n_clips=3, version="2026-03-01"))
    newer = export(fake_finished_run(tmp_path, n_clips=3, version="2026-03-02"))
    dataset_dir = newer.parent
    assert (dataset_dir / "LATEST").read_text().strip() == "2026-03-02"
    (dataset_dir / "withdrawn.json").write_text(json.dumps(
        {"2026-03-02": {"reason": "consent withdrawn", "withdrawn_at": "2026-03-03T00:00:00+00:00"}}))
    catalog = update_catalog(dataset_dir)
    assert catalog["latest"] == "2026-03-01" == (dataset_dir / "LATEST").read_text().strip()
    assert [v.get("withdrawn", {}).get("reason") for v in catalog["versions"]] == [None, "consent withdrawn"]
    listed = run_cli("releases", "--root", str(dataset_dir.parent), "list", "default").stdout
    assert "2026-03-01" in listed.splitlines()[1] and "(latest)" in listed.splitlines()[1]
    assert "WITHDRAWN 2026-03-03T00:00:00+00:00: consent withdrawn" in listed.splitlines()[2]
    assert verify_release(older) == [] and verify_release(newer) == []  # the folders are untouched
    (dataset_dir / "withdrawn.json").write_text(json.dumps(
        {v: {"reason": "x", "withdrawn_at": "2026-03-03T00:00:00+00:00"} for v in ("2026-03-01", "2026-03-02")}))
    assert update_catalog(dataset_dir)["latest"] is None and not (dataset_dir / "LATEST").exists()


@pytest.mark.slow
def test_withdrawing_a_speaker_marks_every_release_built_from_them_and_deletes_their_private_artefacts(
        corpus_runs, reference_dir, reference_cache, tmp_path):
    model, releases, folder = corpus_runs
    copy = tmp_path / "storage"
    for part in ("runs", "releases", "models"):
        shutil.copytree(folder / part, copy / part, symlinks=True)
    cache = tmp_path / "cache"
    shutil.copytree(reference_cache, cache, ignore=shutil.ignore_patterns("cohort-v*", "*.lock"))
    had_calibrations = any(cache.glob("calibrations/*.json"))  # the corpus runs' leak checks cached theirs
    config = write_config(copy, reference_dir, corpus=True, name="consent.yaml", **{"storage.reference_cache": str(cache)})
    valid = export(fake_finished_run(copy, n_clips=3, version="2026-01-15"))  # no corpus model: stays valid
    speaker = "spk_awb"
    speaker_files = json.loads(run_cli("lineage", str(config), "--speaker", speaker).stdout)
    assert [m["version"] for m in speaker_files["models"]] == [model["version"]]
    assert sorted(r["version"] for r in speaker_files["releases"]) == sorted(r.name for r in releases.values())
    assert speaker_files["speaker_files"] == 12
    by_fingerprint = json.loads(run_cli("lineage", str(config), "--corpus-fingerprint",
                                        model["corpus_fingerprint"]).stdout)
    assert by_fingerprint["releases"] == speaker_files["releases"]

    refused = run_cli("withdraw", str(config), "--speaker", speaker, "--reason", f"asked by {speaker}")
    assert refused.returncode == 2 and "must not contain the speaker id" in refused.stderr
    dry = json.loads(run_cli("withdraw", str(config), "--speaker", speaker, "--reason", "consent withdrawn",
                             "--dry-run").stdout)
    assert dry["dry_run"] and all(__import__("pathlib").Path(p).exists() for p in dry["deleted"])
    done = run_cli("withdraw", str(config), "--speaker", speaker, "--reason", "consent withdrawn")
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    assert "train a new model" in result["rebuild"]

    dataset_dir = copy / "releases" / "default"
    catalog = json.loads((dataset_dir / "catalog.json").read_text())
    marked = {v["version"]: v.get("withdrawn", {}).get("reason") for v in catalog["versions"]}
    assert marked == {valid.name: None, **{r.name: "consent withdrawn" for r in releases.values()}}
    assert catalog["latest"] == valid.name == (dataset_dir / "LATEST").read_text().strip()
    listed = run_cli("releases", "--root", str(copy / "releases"), "list", "default").stdout
    assert sum("WITHDRAWN" in line and "consent withdrawn" in line for line in listed.splitlines()) == 2
    everything_public = "".join(p.read_text() for p in dataset_dir.glob("*.json"))
    assert speaker not in everything_public

    # the private artefacts derived from the speaker's audio are gone; other speakers' cached embeddings stay
    assert not (copy / "models" / "default" / model["version"]).exists()
    assert not any((copy / "runs" / "default" / r.name).exists() for r in releases.values())
    assert not (copy / "runs" / "_training" / "default").exists()
    shas = {f.sha256: f.speaker for f in __import__("pipeline.training.corpus", fromlist=["list_corpus"]).list_corpus(reference_dir)}
    left = [shas[p.stem] for p in cache.glob("*/*.npz") if p.stem in shas]
    assert left and speaker not in left
    assert not (cache / "copycheck").exists()
    assert had_calibrations and not (cache / "calibrations").exists()  # its scores are in every cached calibration

    # the page, served, says withdrawn and why; the file itself is unchanged (verify passes)
    version = releases["continue"].name
    server = subprocess.Popen([sys.executable, "-m", "pipeline", "releases", "--root", str(copy / "releases"), "open",
                               "default", version, "--serve", "0"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().strip()
        page = urllib.request.urlopen(url, timeout=30).read().decode()
        assert 'id="withdrawn"' in page and "consent withdrawn" in page
    finally:
        server.kill()
        server.wait()
    assert run_cli("verify", str(dataset_dir / version)).returncode == 0
