"""`python -m pipeline`: build synthetic audio releases from a YAML config.

Exit codes: 0 done, 2 bad input (config, flags, files), 1 the run failed (a check or a stage).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from pipeline.errors import BadInput, PipelineFailure

EPILOG = """examples:
  python -m pipeline run configs/default.yaml --version 2026-01-01
  python -m pipeline validate-config configs/default.yaml
  python -m pipeline train configs/default.yaml
  python -m pipeline generate configs/default.yaml --version 2026-01-01 --shard 0
"""


def _common(parser: argparse.ArgumentParser, shard: bool = False) -> None:
    parser.add_argument("config", help="build config (YAML), e.g. configs/default.yaml")
    parser.add_argument("--version", help="release version: a date YYYY-MM-DD or a token (default: today, UTC)")
    parser.add_argument("--n-clips", type=int, help="override the config's n_clips")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or progress messages")
    if shard:
        parser.add_argument("--shard", type=int, required=True, help="shard number (0 .. n_shards-1)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pipeline", description=__doc__, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run every stage locally and publish the release",
                         description="Run plan, generate, features, leakcheck and export; reruns resume.")
    _common(run)
    run.add_argument("--workers", type=int, help="parallel shard processes (default: one per core)")
    validate = sub.add_parser("validate-config", help="check a config and print it resolved",
                              description="Validate a config; exit 2 with every problem if it is invalid.")
    validate.add_argument("config")
    plan = sub.add_parser("plan", help="sample prompts and plan shards (plan.json, prompts.parquet)")
    _common(plan)
    train = sub.add_parser(
        "train", help="train a model on the config's private corpus (source.corpus); resumes, never published",
        description="Learn from source.corpus: the tiny preset trains its VQ-VAE and three priors from scratch, "
                    "real presets fine-tune their priors from generation.weights_dir. A killed run resumes at its last "
                    "checkpoint; the finished model goes to storage.models/<dataset>/<version>/ (private). Builds "
                    "use it with generation.model: latest (or a version). Prints the model's version and sha256.")
    train.add_argument("config", help="build config (YAML) with a source.corpus")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    prompts = sub.add_parser("prompts", help="preview the run's prompts and their genre/split counts",
                             description="Sample the run's prompts in memory and print a table; writes nothing.")
    _common(prompts)
    prompts.add_argument("--preview", type=int, default=20, metavar="N", help="rows to show (default 20)")
    from pipeline.stages import SHARDED

    for step in SHARDED:
        _common(sub.add_parser(step.name, help=step.help, description=step.help), shard=True)
    export = sub.add_parser("export", help="publish the release from finished shards")
    _common(export)
    verify = sub.add_parser("verify", help="check a published release: checksums, schemas, counts, audio",
                            description="Verify RELEASE_DIR; exit 1 with a list of problems if any.")
    verify.add_argument("release_dir", type=Path)
    privacy = sub.add_parser("privacy", help="reviewer tools: score any folder of audio, calibrate a reference set",
                             description="Speaker-similarity tools for privacy reviewers (any folder of audio).")
    psub = privacy.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    score = psub.add_parser("score", help="score every clip against the reference speakers",
                            description="One row per clip file: file, score, verdict (unscorable counts as a leak).")
    score.add_argument("--reference", type=Path, required=True, help="folder of <speaker_id>/<file>.wav|flac")
    score.add_argument("--clips", type=Path, required=True, help="folder of clips (.wav/.flac, searched recursively)")
    score.add_argument("--out", type=Path, required=True, help="scores.parquet to write")
    score.add_argument("--threshold", type=float, default=None,
                       help="leak threshold (default: calibrated on the reference set for --target-recall)")
    score.add_argument("--target-recall", type=float, default=0.95,
                       help="calibration recall the detector must reach (default 0.95)")
    score.add_argument("--max-fpr", type=float, default=0.05,
                       help="false-positive bound per impostor condition for the calibrated threshold (default 0.05)")
    score.add_argument("--cohort", type=Path, help="more impostor voices (not in the reference set): <voice>/<file>")
    score.add_argument("--cache", type=Path, help="keep reference embeddings here for the next call (private)")
    calibrate = psub.add_parser("calibrate", help="EER, threshold for a target recall, false-positive rate",
                                description="Leave-one-out calibration of the leak threshold on a reference set.")
    calibrate.add_argument("--reference", type=Path, required=True)
    calibrate.add_argument("--impostors", type=Path, help="voices not in the reference set: <speaker>/<file>")
    calibrate.add_argument("--target-recall", type=float, default=0.95)
    calibrate.add_argument("--max-fpr", type=float, default=0.05)
    calibrate.add_argument("--cohort", type=Path, help="more impostor voices (not in the reference set): <voice>/<file>")
    calibrate.add_argument("--cache", type=Path, help="keep reference embeddings here for the next call (private)")
    lineage = sub.add_parser(
        "lineage", help="models and releases built from a speaker's (or a corpus's) data",
        description="List the trained models and published releases of the config's dataset that were built from "
                    "data including SPEAKER (a speaker id of source.corpus or privacy.reference_dir), or from the "
                    "corpus with the given fingerprint. Prints JSON; changes nothing.")
    withdraw = sub.add_parser(
        "withdraw", help="consent withdrawn: mark the releases built from a speaker's data withdrawn, delete "
                         "the private artefacts derived from it",
        description="Mark every release built from SPEAKER's data (or the corpus FINGERPRINT) withdrawn in the "
                    "catalog (LATEST moves to the newest release still valid; release folders stay as they are) and "
                    "delete the private artefacts derived from that data: trained models, the withdrawn runs' "
                    "workspaces, training checkpoints, cached embeddings, copy-check baselines. Prints what it did "
                    "and how to rebuild without them.")
    for command in (lineage, withdraw):
        command.add_argument("config", help="build config (YAML) whose storage and corpus to search")
        who = command.add_mutually_exclusive_group(required=True)
        who.add_argument("--speaker", help="a speaker id of the corpus or reference set (private: never published)")
        who.add_argument("--corpus-fingerprint", help="a corpus fingerprint, as a release manifest's lineage names it")
    withdraw.add_argument("--reason", required=True,
                          help="one public line shown beside each withdrawn release (must not name the speaker)")
    withdraw.add_argument("--dry-run", action="store_true", help="print what would be marked and deleted; change nothing")
    collect = sub.add_parser(
        "gc", help="remove the private leftovers of runs published long ago (tokens, primes, audits, checkpoints)",
        description="Delete the private leftovers of the config's dataset: the workspaces of runs whose release was "
                    "published --older-than ago (plan.json kept; the release holds every aggregate), training "
                    "checkpoints and stale cached embeddings as old. Unpublished runs are never touched.")
    collect.add_argument("config", help="build config (YAML) whose storage to clean")
    collect.add_argument("--older-than", metavar="AGE", help="e.g. 30d, 12h (default: storage.retention_days)")
    collect.add_argument("--dry-run", action="store_true", help="list what would be removed; remove nothing")
    releases = sub.add_parser("releases", help="list, show or diff the published releases of a dataset",
                              description="Read a dataset's catalog of releases.")
    releases.add_argument("--config", default="configs/default.yaml",
                          help="config whose storage.releases root to read (default: configs/default.yaml)")
    releases.add_argument("--root", type=Path, help="releases root folder (overrides --config)")
    rsub = releases.add_subparsers(dest="releases_command", required=True, metavar="ACTION")
    rsub.add_parser("list", help="versions with created_at and counts").add_argument("dataset")
    show = rsub.add_parser("show", help="a version's manifest summary")
    show.add_argument("dataset")
    show.add_argument("version")
    page = rsub.add_parser("open", help="the release page (index.html): print its path, or serve the release",
                           description="Print the path of a release's index.html (open it in a browser: it needs "
                                       "no network), or serve the release folder on 127.0.0.1 with --serve.")
    page.add_argument("dataset")
    page.add_argument("version")
    page.add_argument("--serve", type=int, metavar="PORT",
                      help="serve the release read-only on http://127.0.0.1:PORT/ until interrupted (0: any free port)")
    diff = rsub.add_parser("diff", help="config and count changes between two versions")
    diff.add_argument("dataset")
    diff.add_argument("a")
    diff.add_argument("b")
    return parser


def _privacy(args: argparse.Namespace) -> int:
    from pipeline.privacy import review

    if not 0 < args.target_recall < 1:
        raise BadInput(f"--target-recall {args.target_recall}: must be in (0, 1)")
    if not 0 < args.max_fpr < 1:
        raise BadInput(f"--max-fpr {args.max_fpr}: must be in (0, 1)")
    if args.privacy_command == "calibrate":
        result = review.calibrate_reference(args.reference, args.impostors, args.target_recall, cache=args.cache,
                                            cohort=args.cohort, max_fpr=args.max_fpr)
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    from pipeline.workspace import write_table_atomic

    table, threshold = review.score_folder(args.reference, args.clips, args.threshold, args.target_recall,
                                           cache=args.cache, cohort=args.cohort, max_fpr=args.max_fpr)
    write_table_atomic(args.out, table)
    verdicts = table.column("verdict").to_pylist()
    summary = {v: verdicts.count(v) for v in ("pass", "leak", "unscorable")}
    source = "given" if args.threshold is not None else f"calibrated: FPR <= {args.max_fpr} per impostor condition"
    print(f"{table.num_rows} clips: {summary['pass']} pass, {summary['leak']} leak, {summary['unscorable']} "
          f"unscorable (counted as leaks); threshold {threshold:.4f} ({source}); scores in {args.out}")
    return 0


def _releases(args: argparse.Namespace) -> int:
    from pipeline.config import load_config
    from pipeline.export.publish import update_catalog
    from pipeline.export.verify import diff_releases
    from pipeline.workspace import read_json

    root = args.root or load_config(args.config, check_paths=False).releases_root
    dataset_dir = root / args.dataset
    if not dataset_dir.is_dir():
        raise BadInput(f"no releases of dataset {args.dataset!r} under {root}")
    catalog = update_catalog(dataset_dir)
    if args.releases_command == "list":
        print(f"{'version':<14} {'created_at':<26} {'clips':>6}  counts")
        for v in catalog["versions"]:
            mark = "  (latest)" if v["version"] == catalog["latest"] else ""
            if "withdrawn" in v:
                mark = f"  WITHDRAWN {v['withdrawn']['withdrawn_at']}: {v['withdrawn']['reason']}"
            print(f"{v['version']:<14} {v['created_at']:<26} {sum(v['counts'].values()):>6}  {v['counts']}{mark}")
        return 0
    marks = {v["version"]: v["withdrawn"] for v in catalog["versions"] if "withdrawn" in v}

    def say_if_withdrawn(version: str) -> None:
        if version in marks:
            print(f"WITHDRAWN {marks[version]['withdrawn_at']}: {marks[version]['reason']} (do not use this release)",
                  file=sys.stderr)

    def manifest(version: str) -> dict:
        path = dataset_dir / version / "manifest.json"
        if not path.is_file():
            known = ", ".join(v["version"] for v in catalog["versions"]) or "none"
            raise BadInput(f"{args.dataset} has no release {version!r}; published: {known}")
        return read_json(path)

    if args.releases_command == "show":
        m = manifest(args.version)
        keys = ("dataset", "version", "created_at", "counts", "model_preset", "model_weights_sha256",
                "speaker_encoder", "leak_check", "feature_set", "content_sha256", "code_version")
        print(json.dumps({k: m.get(k) for k in keys} | {"files": len(m["files"]),
                                                        "withdrawn": marks.get(args.version)}, indent=2))
        say_if_withdrawn(args.version)
        return 0
    if args.releases_command == "open":
        manifest(args.version)  # a clear error for an unknown version
        say_if_withdrawn(args.version)
        page = dataset_dir / args.version / "index.html"
        if not page.is_file():
            raise BadInput(f"{args.dataset} {args.version} has no index.html: it was published before release pages "
                           "existed; rebuild it with a new version to get one")
        if args.serve is None:
            print(page)
            return 0
        notice = None
        if args.version in marks:
            notice = f"WITHDRAWN {marks[args.version]['withdrawn_at']}: {marks[args.version]['reason']}"
        return serve_release(page.parent, args.serve, notice)
    lines = diff_releases(manifest(args.a), manifest(args.b))
    print("\n".join(lines) if lines else "no config or count changes")
    return 0


def serve_release(folder: Path, port: int, notice: str | None = None) -> int:
    """Serve `folder` read-only on 127.0.0.1 (GET and HEAD only) until interrupted; prints the page's URL. A
    `notice` (a withdrawn release's) is shown as a banner at the top of index.html (the file is not changed)."""
    import functools
    import html
    import http.server

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            if notice is None or self.path.split("?")[0] not in ("/", "/index.html"):
                return super().do_GET()
            page = (folder / "index.html").read_text()
            banner = (f'<div role="alert" id="withdrawn" style="background:#b00020;color:#fff;padding:1em;'
                      f'font-weight:bold">{html.escape(notice)}</div>')
            body = page.replace("<body>", "<body>" + banner, 1).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    handler = functools.partial(Handler, directory=str(folder))
    with http.server.ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"http://127.0.0.1:{server.server_address[1]}/index.html", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
    return 0


def dispatch(args: argparse.Namespace) -> int:
    from pipeline import runner

    if args.command == "verify":
        from pipeline.export.verify import verify_release

        problems = verify_release(args.release_dir)
        for problem in problems:
            print(problem)
        print(f"{args.release_dir}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
        return 1 if problems else 0
    if args.command == "releases":
        return _releases(args)
    if args.command == "gc":
        from pipeline.config import load_config
        from pipeline.retention import gc, parse_age

        age = parse_age(args.older_than) if args.older_than else None
        print(json.dumps(gc(load_config(args.config), age, args.dry_run), indent=2))
        return 0
    if args.command in ("lineage", "withdraw"):
        from pipeline.config import load_config
        from pipeline.consent import find_lineage, withdraw

        loaded = load_config(args.config)
        if args.command == "lineage":
            print(json.dumps(find_lineage(loaded, args.speaker, args.corpus_fingerprint).as_dict(), indent=2))
        else:
            print(json.dumps(withdraw(loaded, args.reason, args.speaker, args.corpus_fingerprint, args.dry_run), indent=2))
        return 0
    if args.command == "privacy":
        return _privacy(args)
    if args.command == "validate-config":
        from pipeline.config import load_config

        loaded = load_config(args.config)
        print(json.dumps({"config": str(loaded.path), "workspace": str(loaded.workspace_root),
                          "releases": str(loaded.releases_root), **loaded.config.model_dump()}, indent=2))
        return 0
    if args.command == "train":
        from pipeline.config import load_config
        from pipeline.training.stage import train

        model = train(load_config(args.config), quiet=args.quiet)
        print(json.dumps({"version": model.version, "weights_sha256": model.weights_sha256,
                          "corpus_fingerprint": model.corpus_fingerprint, "path": str(model.path)}))
        return 0
    log = (lambda *a: None) if args.quiet else (lambda *a: print(*a, file=sys.stderr))
    ctx = runner.make_context(args.config, args.version, n_clips=args.n_clips, quiet=args.quiet)
    if args.command == "run":
        release = runner.run_all(ctx, n_clips=args.n_clips, workers=args.workers, log=log)
        print(release)
    elif args.command == "plan":
        from pipeline.prompts.stage import plan

        print(json.dumps({"shards": plan(ctx)}))
    elif args.command == "prompts":
        from pipeline.prompts.stage import preview

        print(preview(ctx, args.preview))
    elif args.command == "export":
        from pipeline.export.release import export

        print(export(ctx, log=log))
    else:
        runner.run_shard_stage(args.command, args.config, ctx.version, args.n_clips, args.shard, args.quiet)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return dispatch(args)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (PipelineFailure, FileNotFoundError) as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
