"""The corpus clips that `continue` and `rerender` start from, one per generated clip (private).

`plan` assigns each clip a corpus file (a seeded shuffle of the candidates, cycled) and writes the mapping to
`sources.json` in the run folder, beside nothing that is exported: the release never learns which corpus clip
(or speaker) a clip came from. When the run's model was trained on the corpus, candidates are the files it
trained on, so the held-out part stays unseen for the fidelity comparison and the copy check's baseline.
"""

from __future__ import annotations

import numpy as np

from pipeline.errors import BadInput
from pipeline.training.corpus import list_corpus, read_audio
from pipeline.training.stage import model_folder
from pipeline.workspace import RunContext, read_json

SOURCES_FILE = "sources.json"


def assign_sources(ctx: RunContext, clip_ids: list[str], model: dict | None) -> dict[str, str]:
    """clip_id -> sha256 of the corpus file it starts from."""
    files = list_corpus(ctx.loaded.corpus)
    candidates = sorted({f.sha256 for f in files})
    if model is not None:
        folder = model_folder(ctx.loaded.models_root, ctx.dataset, model["version"])
        trained_on = read_json(folder / "corpus.json")["train_sha256"]
        candidates = sorted(set(candidates) & set(trained_on)) or candidates
    order = np.random.default_rng(ctx.seed % 2**32).permutation(len(candidates))
    return {cid: candidates[order[i % len(candidates)]] for i, cid in enumerate(clip_ids)}


def source_audio(ctx: RunContext, clip_ids: list[str]) -> dict[str, np.ndarray]:
    """clip_id -> its source's audio (mono float32, 44.1 kHz) for these clips."""
    sources = read_json(ctx.root / SOURCES_FILE)
    by_sha = {f.sha256: f.path for f in list_corpus(ctx.loaded.corpus)}
    audio: dict[str, np.ndarray] = {}
    cache: dict[str, np.ndarray] = {}
    for cid in clip_ids:
        sha = sources[cid]
        if sha not in by_sha:
            raise BadInput(f"source.corpus: a file this run's plan assigned (sha256 {sha[:12]}) is no longer in "
                           f"{ctx.loaded.corpus}; a run reproduces its plan, so restore it or build a new version")
        if sha not in cache:
            cache[sha] = read_audio(by_sha[sha])
        audio[cid] = cache[sha]
    return audio
