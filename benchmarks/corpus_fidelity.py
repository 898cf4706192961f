"""Does training on the corpus bring a release closer to it? Trained vs untrained model, against the held-out part.

    python benchmarks/corpus_fidelity.py [--config configs/default.yaml] [--out var/bench-corpus-fidelity]

Builds the config's release twice with the same prompts and seed: once with the model trained on
`source.corpus` (`generation.model: latest`; trained first if needed) and once with the preset's untrained
weights (`generation.model: null`). Both are compared with the corpus files that training never saw (the
model's holdout), two ways:

- `frechet_pc`: the Fréchet distance between Gaussian fits of the first 3 principal components of the
  headline features (level, spectrum shape, timbre, rhythm), standardised and rotated with the statistics of
  the corpus's *training* part (so the holdout only ever plays the part of the target); lower is closer. A few
  components keep the fit meaningful with ~10 held-out files and ~24 clips;
- `column_shapes`: the mean per-feature shape similarity (1 - the two-sample Kolmogorov-Smirnov statistic,
  SDMetrics' column-shape score) over every numeric feature; 1 = the same distribution. It reads 0 for a
  feature whose two samples do not overlap at all, however far apart, so it moves late.

A bootstrap (release clips and held-out files resampled with replacement; the same held-out resample for both
models) gives a 95% interval for each figure and for the difference trained - untrained. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import load_config  # noqa: E402
from pipeline.export.fidelity import HEADLINE_FEATURES, frechet_distance, shape_similarity_numeric  # noqa: E402
from pipeline.features.extract import FEATURE_COLUMNS  # noqa: E402
from pipeline.testing import write_config  # noqa: E402

VERSION = "bench"
FORM = {"sample_rate_hz", "duration_s"}  # what a clip is made of, not what it sounds like


def cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pipeline", *args, "--quiet"], cwd=REPO, capture_output=True,
                            text=True)
    if result.returncode != 0:
        raise SystemExit(f"python -m pipeline {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def corpus_rows(config_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Feature rows of the corpus's (training part, holdout) as the trained model split it."""
    from pipeline.features.stage import feature_set_of
    from pipeline.training.corpus import list_corpus, read_audio
    from pipeline.training.stage import resolve_model

    loaded = load_config(config_path)
    model = resolve_model(loaded.models_root, loaded.config.dataset, "latest")
    held = set(json.loads((model.path / "corpus.json").read_text())["holdout_sha256"])
    extractor = feature_set_of(loaded.config.features)
    parts = {True: [], False: []}
    for f in list_corpus(loaded.corpus):
        parts[f.sha256 in held].append(extractor.extract(read_audio(f.path), 44_100))
    return pd.DataFrame(parts[False]), pd.DataFrame(parts[True])


def column_shapes(release: pd.DataFrame, corpus: pd.DataFrame, columns: list[str]) -> float:
    return float(np.mean([shape_similarity_numeric(release[c].to_numpy(float), corpus[c].to_numpy(float))
                          for c in columns]))


class Components:
    """Standardise with the corpus's training part and project on its first `k` principal components."""

    def __init__(self, train: pd.DataFrame, k: int = 3):
        x = train[list(HEADLINE_FEATURES)].to_numpy(float)
        self.mean, self.spread = x.mean(axis=0), np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
        _, _, vt = np.linalg.svd((x - self.mean) / self.spread, full_matrices=False)
        self.basis = vt[:k].T

    def __call__(self, rows: pd.DataFrame) -> np.ndarray:
        return ((rows[list(HEADLINE_FEATURES)].to_numpy(float) - self.mean) / self.spread) @ self.basis


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "default.yaml")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "bench-corpus-fidelity")
    parser.add_argument("--rounds", type=int, default=2000, help="bootstrap rounds")
    args = parser.parse_args()

    base = load_config(args.config, check_paths=False)
    corpus = base.corpus
    if corpus is None:
        raise SystemExit(f"{args.config}: no source.corpus to train on")
    t0 = time.perf_counter()
    # the config's own models (a model `make run` trained is reused), one shared embedding cache
    configs = {name: write_config(args.out / name, corpus, base=args.config.resolve(), corpus=True, **{
        "storage.models": str(base.models_root), "storage.reference_cache": str(args.out / "reference_cache"),
        "generation.model": model})
        for name, model in (("trained", "latest"), ("untrained", None))}
    trained_model = json.loads(cli("train", str(configs["trained"])))
    train_s = time.perf_counter() - t0
    releases = {name: Path(cli("run", str(path), "--version", VERSION)) for name, path in configs.items()}
    rows = {name: pd.read_parquet(path / "data") for name, path in releases.items()}
    train_part, held = corpus_rows(configs["trained"])
    columns = [c for c, (unit, _) in FEATURE_COLUMNS.items()
               if unit != "flag" and c not in FORM and c in held
               and all(np.isfinite(frame[c].to_numpy(float)).all() for frame in (held, *rows.values()))]
    project = Components(train_part)
    points = {name: project(frame) for name, frame in rows.items()}
    held_points = project(held)

    def figures(sample: dict, corpus_index: np.ndarray) -> dict:
        return {name: {"frechet_pc": frechet_distance(points[name][index], held_points[corpus_index]),
                       "column_shapes": column_shapes(rows[name].iloc[index], held.iloc[corpus_index], columns)}
                for name, index in sample.items()}

    everything = figures({name: np.arange(len(frame)) for name, frame in rows.items()}, np.arange(len(held)))
    rng = np.random.default_rng(0)
    boot = []
    for _ in range(args.rounds):
        corpus_index = rng.integers(len(held), size=len(held))
        boot.append(figures({name: rng.integers(len(frame), size=len(frame)) for name, frame in rows.items()},
                            corpus_index))

    def interval(values) -> list[float]:
        return [round(float(v), 4) for v in np.percentile(values, [2.5, 97.5])]

    result = {
        "holdout_files": len(held), "corpus_train_files": len(train_part), "clips": {n: len(r) for n, r in rows.items()},
        "column_shape_features": len(columns), "model": trained_model["version"], "train_s": round(train_s, 1),
        "train_and_build_s": round(time.perf_counter() - t0, 1), "bootstrap_rounds": args.rounds,
    }
    for measure in ("frechet_pc", "column_shapes"):
        result[measure] = {
            **{name: {"value": round(everything[name][measure], 4),
                      "ci95": interval([b[name][measure] for b in boot])} for name in rows},
            "trained_minus_untrained": {
                "value": round(everything["trained"][measure] - everything["untrained"][measure], 4),
                "ci95": interval([b["trained"][measure] - b["untrained"][measure] for b in boot])}}
    result["headline_medians"] = {name: frame[list(HEADLINE_FEATURES)].median().round(3).to_dict()
                                  for name, frame in rows.items()}  # the holdout's own stay private
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
