"""Test helpers shipped with the package: seeded signals and throw-away build configs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]


def default_n_clips() -> int:
    """Clips of the embedded default config (configs/default.yaml): what a default release holds."""
    import yaml

    return int(yaml.safe_load((REPO_ROOT / "configs" / "default.yaml").read_text())["n_clips"])
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


def sine(freq_hz: float, seconds: float, rate: int = 44_100, dbfs: float = -6.0) -> np.ndarray:
    """A sine of peak `dbfs`: (samples,) float32."""
    t = np.arange(int(seconds * rate)) / rate
    return (10 ** (dbfs / 20) * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def white_noise(seconds: float, rate: int = 44_100, seed: int = 0, dbfs: float = -12.0) -> np.ndarray:
    """Gaussian white noise of RMS `dbfs`: (samples,) float32."""
    rng = np.random.default_rng(seed)
    return (10 ** (dbfs / 20) * rng.standard_normal(int(seconds * rate))).astype(np.float32)


def click_track(bpm: float, seconds: float, rate: int = 44_100) -> np.ndarray:
    """Decaying 2 kHz clicks (20 ms) on every beat at `bpm`: (samples,) float32."""
    audio = np.zeros(int(seconds * rate), dtype=np.float32)
    n = int(0.02 * rate)
    click = (0.8 * np.exp(-np.arange(n) / (0.003 * rate)) * np.sin(2 * np.pi * 2000 * np.arange(n) / rate))
    for start in (np.arange(0.0, seconds, 60.0 / bpm) * rate).astype(int):
        audio[start:start + n] = click[: audio.size - start]
    return audio


def write_config(folder: Path, reference_dir: Path, *, base: Path = DEFAULT_CONFIG, name: str = "build.yaml",
                 corpus: bool = False, **overrides) -> Path:
    """A copy of `base` whose storage lives in `folder`, with top-level or `section.key` overrides.

    Without `corpus`, the build uses the preset's own weights (no training) and `reference_dir` as its
    reference set; with it, `reference_dir` is `source.corpus` (the model's corpus and the reference set).

    write_config(tmp, voices, n_clips=2, **{"prompts.duration_s": 0.5})
    """
    data = yaml.safe_load(base.read_text())
    data["storage"] = {"workspace": str(folder / "runs"), "releases": str(folder / "releases"),
                       "models": str(folder / "models")}
    if corpus:  # `reference_dir` is the private corpus: a model learns from it and it is the reference set
        data.setdefault("source", {})["corpus"] = str(reference_dir)
        data["privacy"].pop("reference_dir", None)
    else:  # a build from the preset's own weights, leak-checked against `reference_dir`
        data.pop("source", None)
        data.get("generation", {}).pop("model", None)
        data["privacy"]["reference_dir"] = str(reference_dir)
    lyrics = data.get("prompts", {}).get("lyrics", {})
    if isinstance(lyrics, dict) and lyrics.get("file"):
        lyrics["file"] = str((base.parent / lyrics["file"]).resolve())
    for key, value in overrides.items():
        target = data
        *parents, leaf = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = value
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def run_cli(*args: str, env: dict | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """`python -m pipeline ARGS` in a subprocess, from the repository root; output captured as text."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def tone_voices(folder: Path, speakers: tuple[str, ...] = ("spk_alpha", "spk_bravo"), files: int = 3) -> Path:
    """A stand-in reference folder of seeded tones (`<speaker>/<nn>.wav`, 16 kHz): enough for code that lists
    or hashes a reference set without embedding it (the export's private-string scan)."""
    import soundfile as sf

    for number, speaker in enumerate(speakers):
        for index in range(files):
            path = folder / speaker / f"utterance_{index:02d}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, sine(200.0 + 50 * number + 10 * index, 0.5, rate=16_000), 16_000)
    return folder


def fake_finished_run(folder: Path, *, n_clips: int = 6, leaked: tuple[int, ...] = (), silent: tuple[int, ...] = (),
                      clipped: tuple[int, ...] = (), unscorable: tuple[int, ...] = (), copied: tuple[int, ...] = (),
                      version: str = "2026-03-01",
                      recall_shortfall: str | None = None, **overrides):
    """A run whose plan, generate and leakcheck outputs are written directly (seeded tones, verdicts by clip
    number) and whose features are extracted for real, so that export, its gates, reports, publishing and
    `verify` are tested in seconds without Jukebox or the speaker encoder. Clip numbers in `leaked` get a
    `leak` verdict, in `unscorable` an `unscorable` one, in `copied` a `copy` one (the copy check's), in `silent`
    silent audio, in `clipped` a sine clipped at full scale. Overrides are `section.key` config values. Returns the RunContext.

        ctx = fake_finished_run(tmp_path, leaked=(1,), silent=(2,))
        release = export(ctx)
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pipeline.features.stage import features
    from pipeline.files import write_json_atomic, write_table_atomic
    from pipeline.generation.stage import GENERATION_SCHEMA, flac_bytes
    from pipeline.privacy.leakcheck import AUDIT_SCHEMA, VERDICTS
    from pipeline.prompts.stage import plan
    from pipeline.runner import make_context

    voices = tone_voices(folder / "voices")
    config = write_config(folder, voices, n_clips=n_clips, n_shards=1, **{
        "prompts.duration_s": 0.5, "features.workers": 1, "privacy.max_reject_rate": 1.0, **overrides})
    ctx = make_context(config, version, quiet=True)
    plan(ctx)
    prompts = pq.read_table(ctx.root / "prompts.parquet").to_pylist()
    gen_dir, check_dir = ctx.shard_dir("generate", 0), ctx.shard_dir("leakcheck", 0)
    rows, audit = [], []
    for number, prompt in enumerate(prompts):
        audio = sine(220.0 * (1 + number / 4), 0.5, dbfs=-12)
        if number in silent:
            audio = np.zeros(22_050, np.float32)
        elif number in clipped:
            audio = np.clip(2 * sine(440.0, 0.5, dbfs=0), -1, 1)
        relative = f"audio/{prompt['clip_id']}.flac"
        (gen_dir / "audio").mkdir(parents=True, exist_ok=True)
        (gen_dir / relative).write_bytes(flac_bytes(audio, 44_100))
        rows.append({"clip_id": prompt["clip_id"], "audio_file": relative, "model_preset": "tiny",
                     "model_weights_sha256": "0" * 64, "levels_sampled": 3, "temperature": prompt["temperature"],
                     "level_temperatures": [prompt["temperature"]] * 3, "top_k": 0, "top_p": 0.0,
                     "sampling_seed": 1000 + number, "sample_rate_hz": 44_100, "num_samples": audio.size,
                     "batch_size": 1, "tokens_per_s": [1.0, 1.0, 1.0], "generation_wall_s": 0.1,
                     "generation_mode": "prompt"})
        verdict = ("leak" if number in leaked else "unscorable" if number in unscorable
                   else "copy" if number in copied else "pass")
        audit.append({"clip_id": prompt["clip_id"], "verdict": verdict, "no_voice": verdict == "pass",
                      "max_similarity": 2.0 if verdict == "leak" else None,
                      "nearest_speaker": "spk_alpha" if verdict == "leak" else None, "windows": 1,
                      "error": "decode error" if verdict == "unscorable" else None, "attempts": 0,
                      "copy_dcr": 0.1 if verdict == "copy" else 3.0 if copied else None,
                      "copy_ber": 0.05 if verdict == "copy" else 0.31 if copied else None})
    write_table_atomic(gen_dir / "generation.parquet", pa.Table.from_pylist(rows, schema=GENERATION_SCHEMA))
    ctx.mark_done("generate", 0, "fake", [gen_dir / "generation.parquet"])
    features(ctx, 0)
    write_table_atomic(check_dir / "audit.parquet", pa.Table.from_pylist(audit, schema=AUDIT_SCHEMA))
    counts = {v: sum(a["verdict"] == v for a in audit) for v in VERDICTS}
    copy_check = {"ratio": 0.5, "threshold": 1.0, "holdout_dcr": [2.0, 2.5],
                  "dcr": [a["copy_dcr"] for a in audit if a["copy_dcr"] is not None],
                  "fingerprint": {"max_ber": 0.13, "recordings": 7,
                                  "ber": [a["copy_ber"] for a in audit if a["copy_ber"] is not None]}} if copied else None
    rate = {"rate": 1.0, "hits": 10, "trials": 10, "ci95": [0.72, 1.0]}
    write_json_atomic(check_dir / "summary.json", {
        "counts": counts, "first_pass_counts": counts, "regenerated": 0, "no_voice": counts["pass"],
        "scores": [a["max_similarity"] for a in audit if a["max_similarity"] is not None],
        "self_test": {"canaries": 6, "caught": 6, "allowed_misses": 2, "lowest_score": 1.5,
                      "by_transform": {"pitch±1": {"caught": 2, "scored": 2}, "mixed0db": {"caught": 2, "scored": 2},
                                       "band8k": {"caught": 2, "scored": 2}}},
        "threshold": 1.0, "threshold_source": "calibrated",
        "calibration": {"threshold": 1.0, "target_recall": 0.95, "max_fpr": 0.05, "recall": 0.9 if recall_shortfall
                        else 1.0, "false_positive_rate": 0.01, "equal_error_rate": 0.02, "recall_at_fpr_1pct": 0.9,
                        "recall_at_fpr_01pct": 0.8, "genuine_trials": 10, "impostor_trials": 100,
                        "recall_by_condition": {"clean": rate}, "fpr_by_kind": {"other voices, clean": rate | {
                            "rate": 0.0, "hits": 0}}, "threshold_set_by": ["other voices, clean"],
                        "cohort_jackknife": {"cohort_voices": 14, "threshold": [0.93, 1.0], "recall": [1.0, 1.0]}},
        "recall_shortfall": recall_shortfall, "score_normalisation": "cohort margin (fake run)",
        "enrolment_variants": ["clean"], "reference_fingerprint": "f" * 64, "encoder": "resemblyzer-test",
        "copy_check": copy_check})
    ctx.mark_done("leakcheck", 0, "fake", [check_dir / "audit.parquet", check_dir / "summary.json"])
    return ctx


@contextlib.contextmanager
def smtp_sink():
    """A local SMTP server on 127.0.0.1 (a free port) that keeps every message it receives, and the Airflow
    connection `smtp_test` pointing at it (environment variable, no TLS, no login):

        with smtp_sink() as mails:
            ...  # something sends through smtp_conn_id="smtp_test"
        email.message_from_string(mails[0])["Subject"]
    """
    import json
    import socketserver
    import threading

    class Session(socketserver.StreamRequestHandler):
        def handle(self):
            def reply(line: str) -> None:
                self.wfile.write((line + "\r\n").encode())

            reply("220 synthaudio test sink")
            lines, in_data = [], False
            while raw := self.rfile.readline():
                text = raw.decode("utf-8", "replace").rstrip("\r\n")
                if in_data:
                    if text == ".":
                        in_data = False
                        self.server.mails.append("\n".join(lines))
                        lines = []
                        reply("250 queued")
                    else:
                        lines.append(text[1:] if text.startswith("..") else text)
                elif text[:4].upper() in ("EHLO", "HELO"):
                    reply("250 hello")
                elif text[:4].upper() == "DATA":
                    in_data = True
                    reply("354 end with <CRLF>.<CRLF>")
                elif text[:4].upper() == "QUIT":
                    reply("221 bye")
                    return
                else:
                    reply("250 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Session)
    server.daemon_threads = True
    server.mails = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    name = "AIRFLOW_CONN_SMTP_TEST"
    before = os.environ.get(name)
    os.environ[name] = json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": server.server_address[1],
                                   "extra": {"disable_ssl": True, "disable_tls": True}})
    try:
        yield server.mails
    finally:
        server.shutdown()
        server.server_close()
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before
