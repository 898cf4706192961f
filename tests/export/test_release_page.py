"""The release page in a real browser (Debian's chromium driven by playwright), with the network blocked."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.export.page import fmt, lookup
from pipeline.export.release import export
from pipeline.export.verify import verify_release
from pipeline.testing import fake_finished_run

REPO = Path(__file__).resolve().parents[2]


def _serve(release: Path):
    """`python -m pipeline releases open DATASET VERSION --serve 0`: (process, page URL)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "releases", "--root", str(release.parent.parent), "open",
         release.parent.name, release.name, "--serve", "0"],
        stdout=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True)
    url = process.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/index.html"), url
    return process, url


def check_page_in_browser(release: Path, screenshot: Path | None = None) -> dict:
    """Load the page with every request outside the release's server refused; returns what was seen."""
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: make deps installs it"
    process, url = _serve(release)
    base = url.rsplit("/", 1)[0] + "/"
    refused, errors = [], []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            context = browser.new_context()

            def gate(route):
                if route.request.url.startswith(base):
                    route.continue_()
                else:
                    refused.append(route.request.url)
                    route.abort()

            context.route("**/*", gate)
            page = context.new_page()
            page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(url, wait_until="load")
            page.wait_for_function(
                "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)",
                timeout=20_000)
            seen = {
                "images": page.eval_on_selector_all("img", "els => els.map(e => e.complete ? e.naturalWidth : 0)"),
                "durations": page.eval_on_selector_all("audio", "els => els.map(a => a.error ? -1 : a.duration)"),
                "figures": page.eval_on_selector_all(
                    "[data-json]", "els => els.map(e => [e.dataset.json, e.textContent])"),
                "genres": page.eval_on_selector_all("table:last-of-type tr td:first-child",
                                                    "els => els.map(e => e.textContent)"),
            }
            if screenshot is not None:
                screenshot.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
            browser.close()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=10)
    seen["refused"], seen["errors"] = refused, errors
    return seen


def assert_page_shows_the_reports(release: Path, seen: dict) -> None:
    assert seen["refused"] == [] and seen["errors"] == []
    assert seen["images"] and all(width > 0 for width in seen["images"])
    assert seen["durations"] and all(duration > 0 for duration in seen["durations"])
    documents = {name: json.loads((release / name).read_text())
                 for name in ("manifest.json", "privacy_report.json", "utility_report.json")}
    assert len(seen["figures"]) >= 15
    for reference, shown in seen["figures"]:
        file, path = reference.split(":", 1)
        assert shown == fmt(lookup(documents[file], path)), (reference, shown)
    genres = set(pq.read_table(release / "data", columns=["genre"]).column("genre").to_pylist())
    assert genres and genres == set(seen["genres"])  # a listening sample of every genre


def test_a_release_carries_its_page_and_fidelity_report_under_its_checksums(tmp_path):
    ctx = fake_finished_run(tmp_path, n_clips=6, leaked=(1,))
    release = export(ctx)
    assert verify_release(release) == []
    sums = (release / "SHA256SUMS").read_text()
    assert "  index.html\n" in sums and "  utility_report.json\n" in sums
    report = json.loads((release / "utility_report.json").read_text())
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["fidelity"]["column_shapes"] == report["overall"]["column_shapes"]["mean"]
    assert "insufficient" in report["overall"]["frechet"]  # 5 released clips: the distance is not printed
    assert "index.html" in (release / "README.md").read_text()
    (release / "index.html").write_text((release / "index.html").read_text() + "<!-- edited -->")
    assert any("index.html" in problem for problem in verify_release(release))


@pytest.mark.slow  # a real browser
def test_the_page_loads_offline_and_shows_what_the_reports_say(tmp_path):
    release = export(fake_finished_run(tmp_path, n_clips=8, leaked=(2,)))
    seen = check_page_in_browser(release)
    assert_page_shows_the_reports(release, seen)


def test_releases_open_prints_the_page_or_says_what_is_missing(tmp_path):
    release = export(fake_finished_run(tmp_path, n_clips=3))
    root = release.parent.parent
    args = [sys.executable, "-m", "pipeline", "releases", "--root", str(root), "open", release.parent.name]
    shown = subprocess.run(args + [release.name], capture_output=True, text=True, cwd=REPO)
    assert shown.returncode == 0 and shown.stdout.strip() == str(release / "index.html")
    missing = subprocess.run(args + ["1999-01-01"], capture_output=True, text=True, cwd=REPO)
    assert missing.returncode == 2 and "no release '1999-01-01'" in missing.stderr


@pytest.mark.slow  # reads the default release built once for the session (conftest.cli_release)
def test_the_default_release_page_in_the_browser(cli_release):
    screenshot = REPO / "var" / "release-page-default.png"
    seen = check_page_in_browser(cli_release, screenshot)
    assert_page_shows_the_reports(cli_release, seen)
    assert screenshot.stat().st_size > 10_000
    report = json.loads((cli_release / "utility_report.json").read_text())
    assert "frechet_distance" in report["overall"]["frechet"]  # the default is sized for the headline figures


def test_a_users_embedding_replaces_the_features_in_the_distance(tmp_path, monkeypatch):
    module = tmp_path / "my_embedding.py"
    module.write_text("import numpy as np\n\ndef embed(audio, rate):\n"
                      "    return np.array([audio.std(), np.abs(audio).max(), rate / 1000.0])\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    release = export(fake_finished_run(tmp_path / "run", n_clips=4, **{"export.fidelity_embedding": "my_embedding:embed"}))
    report = json.loads((release / "utility_report.json").read_text())
    assert report["embedding"] == "my_embedding:embed"
    assert report["overall"]["frechet"]["dimensions"] == 3 and report["overall"]["frechet"]["release_items"] == 4


def test_an_embedding_that_cannot_be_loaded_is_named():
    from pipeline.errors import BadInput
    from pipeline.export.fidelity import load_embedding

    with pytest.raises(BadInput, match="export.fidelity_embedding 'no_such_module:embed': cannot load it"):
        load_embedding("no_such_module:embed")
