"""Private leftovers expire: gc removes a published run's private files (plan.json kept), never an unpublished run,
and stale cached embeddings only."""

import json
import os
import time

from pipeline.export.release import export
from pipeline.export.verify import verify_release
from pipeline.testing import fake_finished_run, run_cli


def test_gc_removes_what_a_published_run_kept_privately_and_nothing_else(tmp_path):
    published = fake_finished_run(tmp_path, n_clips=3, version="2026-03-01")
    release = export(published)
    pending = fake_finished_run(tmp_path, n_clips=3, version="2026-03-02")  # finished shards, not exported
    config = str(published.loaded.path)
    cache = published.loaded.workspace_root / "_reference_cache" / "resemblyzer-x"
    cache.mkdir(parents=True)
    current = next(published.loaded.reference_dir.rglob("*.wav"))
    from pipeline.files import sha256_file

    stale, kept = cache / ("ab" * 32 + ".npz"), cache / f"{sha256_file(current)}.npz"
    for path in (stale, kept):
        path.write_bytes(b"embedding")
        os.utime(path, (time.time() - 40 * 86_400,) * 2)

    fresh = json.loads(run_cli("gc", config).stdout)  # default: storage.retention_days (30): nothing is that old
    assert fresh["removed"] == [str(stale)]
    stale.write_bytes(b"embedding")
    listed = json.loads(run_cli("gc", config, "--older-than", "0d", "--dry-run").stdout)
    assert str(published.root / "generate") in listed["would_remove"] and listed["bytes"] > 0
    assert (published.root / "generate").exists()

    removed = json.loads(run_cli("gc", config, "--older-than", "0d").stdout)["removed"]
    assert sorted(p.name for p in published.root.iterdir()) == ["plan.json"]
    assert str(stale) in removed and kept.is_file()  # a file still in the reference set stays cached
    assert not any(str(pending.root) in path for path in removed) and (pending.root / "generate").is_dir()
    assert verify_release(release) == []  # the release needs nothing gc removed

    bad = run_cli("gc", config, "--older-than", "soon")
    assert bad.returncode == 2 and "expected a number and a unit" in bad.stderr
