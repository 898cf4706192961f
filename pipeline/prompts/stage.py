"""The `plan` stage: resolve the run's shards and sample its prompts (plan.json, prompts.parquet)."""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.errors import BadInput
from pipeline.generation.presets import TINY_MAX_SECONDS, check_vocabulary, known_vocabulary, lyric_vocabulary
from pipeline.prompts.lyrics import check_artists, name_pattern, prepare_lyrics
from pipeline.prompts.sampler import PromptSpec, sample_prompts
from pipeline.storage import synced_stage
from pipeline.workspace import RunContext, read_json, run_once, write_json_atomic, write_table_atomic


def shard_bounds(n_clips: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous [start, stop) clip ranges, sizes differing by at most one."""
    base, extra = divmod(n_clips, n_shards)
    bounds, start = [], 0
    for shard in range(n_shards):
        stop = start + base + (1 if shard < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def protected_names(ctx: RunContext) -> list[str]:
    """The config's protected people plus every reference speaker id (a folder's speaker folders, or a CSV
    manifest's speaker_id column)."""
    from pipeline.training.corpus import list_corpus

    speakers = sorted({f.speaker for f in list_corpus(ctx.loaded.reference_dir)})
    return list(dict.fromkeys([*ctx.config.prompts.protected_names, *speakers]))


def prompt_spec(ctx: RunContext) -> tuple[PromptSpec, dict]:
    """Validate the prompt config against the model and the protected identities; the spec and its report."""
    cfg = ctx.config
    prompts = cfg.prompts
    artists, genres = known_vocabulary(cfg.generation.preset, ctx.loaded.weights_dir)
    check_vocabulary("artists", sorted(prompts.artists), artists)
    check_vocabulary("genres", sorted(prompts.genres), genres)
    names = protected_names(ctx)
    check_artists(sorted(prompts.artists), [name_pattern(n) for n in names], names)
    if cfg.generation.preset == "tiny" and max(prompts.durations()) > TINY_MAX_SECONDS:
        raise BadInput(
            f"{ctx.loaded.path}: prompts.duration_s: {max(prompts.durations())} s is longer than the tiny preset's "
            f"context ({TINY_MAX_SECONDS} s); use a shorter duration or a real preset"
        )
    lines, report = prepare_lyrics(prompts.lyrics, ctx.loaded.lyrics_file, names,
                                   lyric_vocabulary(cfg.generation.preset, ctx.loaded.weights_dir))
    spec = PromptSpec(
        dataset=cfg.dataset, version=ctx.version, genres=dict(prompts.genres), artists=dict(prompts.artists),
        lyrics=tuple(lines), durations=tuple(prompts.durations()), temperatures=tuple(prompts.temperatures()),
        splits=dict(prompts.splits), caption_template=prompts.caption_template,
    )
    return spec, {"lyrics": report.as_dict(), "protected_names": len(names)}


def counts(table, column: str) -> dict[str, int]:
    return dict(sorted(Counter(table.column(column).to_pylist()).items()))


@synced_stage("plan")
def plan(ctx: RunContext) -> list[int]:
    """Write plan.json and prompts.parquet; return the shard numbers to fan out over."""
    cfg = ctx.config
    spec, report = prompt_spec(ctx)
    inputs = {"config": cfg.fingerprint(), "version": ctx.version, "code": __version__, "spec": repr(spec)}

    def body():
        model = pinned_model(ctx)
        table = sample_prompts(spec, ctx.seed, cfg.n_clips)
        prompts_path = ctx.root / "prompts.parquet"
        write_table_atomic(prompts_path, table)
        written = [prompts_path]
        if cfg.generation.mode != "prompt":  # private: which corpus clip each clip starts from
            from pipeline.generation.sources import SOURCES_FILE, assign_sources

            write_json_atomic(ctx.root / SOURCES_FILE,
                              assign_sources(ctx, table.column("clip_id").to_pylist(), model))
            written.append(ctx.root / SOURCES_FILE)
        plan_path = ctx.root / "plan.json"
        write_json_atomic(plan_path, {
            "dataset": cfg.dataset, "version": ctx.version, "run_seed": ctx.seed, "n_clips": cfg.n_clips,
            "shards": [list(b) for b in shard_bounds(cfg.n_clips, cfg.n_shards)],
            "config_sha256": cfg.fingerprint(), "config": cfg.model_dump(), "model": model,
            "report": {**report, "genres": counts(table, "genre"), "splits": counts(table, "split")},
        })
        return [*written, plan_path]

    run_once(ctx, "plan", None, inputs, body)
    return list(range(len(read_json(ctx.root / "plan.json")["shards"])))


def pinned_model(ctx: RunContext) -> dict | None:
    """The trained model this run generates with (`generation.model`), resolved now and written into plan.json:
    `latest` means the newest at plan time, so a rerun or backfill of this version uses the same model."""
    wanted = ctx.config.generation.model
    if wanted is None:
        return None
    from pipeline.training.stage import resolve_model

    model = resolve_model(ctx.loaded.models_root, ctx.config.dataset, wanted)
    return {"version": model.version, "weights_sha256": model.weights_sha256,
            "corpus_fingerprint": model.corpus_fingerprint}


def shard_prompts(ctx: RunContext, shard: int):
    """The prompts of one shard, as an Arrow table."""
    bounds = read_json(ctx.root / "plan.json")["shards"]
    if not 0 <= shard < len(bounds):
        raise BadInput(f"--shard {shard}: this run has shards 0..{len(bounds) - 1}")
    start, stop = bounds[shard]
    return pq.read_table(ctx.root / "prompts.parquet").slice(start, stop - start)


def preview(ctx: RunContext, rows: int) -> str:
    """A text table of the first `rows` prompts and the genre/split counts of the whole run (nothing written)."""
    spec, report = prompt_spec(ctx)
    table = sample_prompts(spec, ctx.seed, ctx.config.n_clips)
    shown = table.slice(0, rows).select(["clip_id", "split", "genre", "artist", "duration_s", "caption"]).to_pylist()
    widths = {k: max([len(k)] + [len(str(r[k])) for r in shown]) for k in shown[0]} if shown else {}
    lines = ["  ".join(k.ljust(w) for k, w in widths.items()).rstrip()]
    lines += ["  ".join(str(r[k]).ljust(w) for k, w in widths.items()).rstrip() for r in shown]
    total = table.num_rows
    lines.append("")
    for column in ("genre", "split"):
        lines.append(f"{column} counts: " + ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in counts(table, column).items()))
    lyrics = report["lyrics"]
    lines.append(f"lyrics: {lyrics['lines_in']} lines in, {lyrics['dropped_sensitive']} dropped as sensitive, "
                 f"{lyrics['transliterated_chars']} characters transliterated, {lyrics['dropped_chars']} dropped")
    return "\n".join(lines)
