"""The generated dataset card (README.md of a release)."""

from __future__ import annotations

from pipeline.export.schema import column_docs


def _fidelity_text(fidelity: dict) -> str:
    overall = fidelity["overall"]
    frechet = overall["frechet"]
    if "insufficient" in frechet:
        distance = f"The Fréchet distance is not given: it {frechet['insufficient']}."
    else:
        low, high = frechet["bootstrap_ci95"]
        distance = (f"Fréchet distance of standardised feature vectors: {frechet['frechet_distance']:.3f} "
                    f"(95% interval {low:.3f}–{high:.3f}; extrapolated to unlimited samples "
                    f"{frechet['extrapolated']['intercept']:.3f}, fit R² {frechet['extrapolated']['r2']:.2f}).")
    shapes, trends = overall["column_shapes"]["mean"], overall["column_pair_trends"]["mean"]
    return (f"Compared with {fidelity['corpus']} ({overall['items']['corpus']} items; only aggregates leave the "
            f"workspace): column shape similarity {shapes if shapes is None else f'{shapes:.3f}'}, column pair "
            f"trends {trends if trends is None else f'{trends:.3f}'} (1 = the same). {distance} "
            "`utility_report.json` holds every figure; `index.html` draws them.")


def dataset_card(summary: dict, report: dict, quality: dict, fidelity: dict | None = None) -> str:
    """Markdown card: what it is, how to load it, every field, splits, privacy figures, limits, licence."""
    name, version = summary["dataset"], summary["version"]
    counts = summary["counts"]
    total = sum(counts.values())
    fields = "\n".join(f"| `{n}` | {t} | {u} | {m} |" for n, t, u, m in column_docs())
    splits = "\n".join(f"| {s} | {c} |" for s, c in counts.items())
    privacy = report["counts"]
    flags = "\n".join(f"| `{flag}` | {quality['flagged'][flag]} | {action} |" for flag, action in quality["action"].items())
    return f"""# {name} — release {version}

{summary['description'] or 'A synthetic audio dataset built by Synthaudio.'}

{total} clips of synthetic audio generated with OpenAI's Jukebox architecture (preset
`{summary['model_preset']}`), each a 44.1 kHz mono FLAC file with its prompt, generation parameters,
`{summary['feature_set']}` audio features and the verdict of a speaker-similarity leak check.
{_model_text(summary)}

**Every clip is AI-generated (synthetic) audio, not a recording of anyone.** It is labelled so in three
machine-readable places: the `ai_generated` column (always true); each FLAC's Vorbis comments
(`AI_GENERATED=true`, `DIGITAL_SOURCE_TYPE` = IPTC `trainedAlgorithmicMedia`, `GENERATOR`, `MODEL_SHA256`,
`DATASET`, `DATASET_VERSION`, `CLIP_ID`), which `python -m pipeline verify` checks; and this card. Keep the
label when you redistribute or transform the audio (transparency rules for generated audio, e.g. the EU AI
Act's Article 50, ask for it).

## Load it

```python
import pandas as pd
df = pd.read_parquet("data/")                      # all splits; df.audio.str["path"] -> audio/<clip_id>.flac

import pyarrow.dataset as ds
table = ds.dataset("data/", format="parquet").to_table()

import duckdb
duckdb.sql("SELECT split, count(*) FROM 'data/*.parquet' GROUP BY split")

from datasets import load_dataset, Audio            # Hugging Face datasets
dset = load_dataset("parquet", data_dir="data").cast_column("audio", Audio())
```
`audio.path` is relative to this folder: run from here, or join it with the folder's path.
Check integrity with `sha256sum -c SHA256SUMS`.

## Splits

| split | clips |
| --- | --- |
{splits}

A clip's split is derived from its id, so it never changes when a later release grows the dataset.

## Fields

| name | type | unit | meaning |
| --- | --- | --- | --- |
{fields}

## Quality gates

Every generated clip was analysed before release; a flag's action says whether flagged clips were
dropped or kept with the flag set (the `is_*` columns). {quality['dropped']} of {quality['clips']}
generated clips were dropped by these gates.

| flag | clips flagged | action |
| --- | --- | --- |
{flags}

## Privacy

Every clip was checked against a private reference set of real voices with a speaker encoder
(`{report['speaker_encoder']}`). Each clip is embedded in overlapping windows; every window is compared
with each reference speaker enrolled under {len(report['enrolment_variants'] or [])} variants (clean,
pitch-shifted, tape-speed, band-limited, phone-band, under accompaniment), score normalisation `{report['score_normalisation']}`;
the clip's score is the highest. The threshold {report['threshold']:.4f} was {report['threshold_source']}
{_calibration_text(report)}
Clips at or above it (leaks), and clips that could not be scored, were removed; none of them is in
this release. Of {privacy['clips']} generated clips, {privacy['rejected_first_pass']} were rejected on first
sampling (rejection rate {report['rejection_rate']:.3f}, bound {report['max_reject_rate']}) and
{privacy['regenerated']} of them were sampled again, each time {report.get('regenerate_temperature_step', 0)} hotter
(the `temperature` column says how far), until they passed (`on_leak: {report['on_leak']}`);
{privacy['leak']} leaks and {privacy['unscorable']} unscorable clips remain excluded;
{privacy['no_voice']} contained no voiced speech. {_copy_text(report.get('copy_check'), privacy)} The detector caught
{report['detector_self_test']['canaries_caught']} of {report['detector_self_test']['canaries_scored']}
known-positive canaries (held-out reference utterances pitch-shifted, mixed under generated audio at
0 dB, band-limited) on this run. No reference audio, embedding, file name or speaker id is part of this
release; `privacy_report.json` holds the figures.

## Fidelity

{_fidelity_text(fidelity) if fidelity else 'No fidelity report.'}

Open [`index.html`](index.html) in a browser (offline) for the summary, the privacy and fidelity pictures
and a listening table of every genre.

## Limitations

- Speaker similarity is a statistical check: it lowers, and does not remove, the chance that a clip
  resembles a real person's voice.
- Features are computed by librosa on the decoded FLAC; see the table above for definitions.

## Licence and provenance

Generated by Synthaudio with the Jukebox architecture (OpenAI; implementation from Hugging Face
transformers 4.57.6). Real Jukebox weights are released by OpenAI under their own terms
(non-commercial use); a release built from them inherits those terms. `manifest.json` records the
code version, resolved config, model weights hash and every file's checksum.
"""


def _model_text(summary: dict) -> str:
    """Where the model's weights came from: the preset's own, or training on a private corpus (hashes only)."""
    lineage = summary.get("lineage")
    if lineage is not None:
        return (f"The model (version `{lineage['model_version']}`, weights sha256 `{lineage['model_sha256'][:16]}…`) "
                "learned from a private corpus (fingerprint "
                f"`{lineage['corpus_fingerprint'][:16]}…`); neither the model nor any corpus audio, name or text is "
                "part of this release, and every clip was checked against the corpus's voices.")
    if summary["model_preset"] == "tiny":
        return "**The `tiny` preset is a smoke-test model with random weights: its audio is noise-like, not music.**"
    return ""


def _calibration_text(report: dict) -> str:
    """The calibration paragraph of the card: how the threshold was chosen and what it achieves."""
    calibration = report["calibration"]
    how = (f"as the lowest that keeps the false-positive rate within {report['max_fpr']} for every kind of impostor "
           "trial (other voices under each condition, music, noise), on calibration trials that enrolment never saw"
           if report["threshold_source"] == "calibrated" else "by the build config")
    if report["threshold_source"] == "calibrated" and calibration.get("threshold_set_by"):
        how += f"; the impostor trials that set it: {', '.join(calibration['threshold_set_by'])}"
    spread = calibration.get("cohort_jackknife") or {}
    if report["threshold_source"] == "calibrated" and spread:
        low, high = spread["recall"]
        recall = f"recall {low}" if low == high else f"recall between {low} and {high}"
        how += (f". The impostor trials come from {spread['cohort_voices']} cohort voices; calibrated without any "
                f"one of them, the threshold would lie between {spread['threshold'][0]} and {spread['threshold'][1]} "
                f"({recall}): a threshold held up by one voice near a reference speaker moves with it")
    lines = [f"{how}. On those trials: recall {calibration['recall']} of {calibration['genuine_trials']} genuine "
             f"trials, false-positive rate {calibration['false_positive_rate']} of {calibration['impostor_trials']} "
             f"impostor trials, equal error rate {calibration['equal_error_rate']}, recall "
             f"{calibration['recall_at_fpr_1pct']} at 1% and {calibration['recall_at_fpr_01pct']} at 0.1% FPR.",
             "", "| calibration condition | recall | 95% interval | trials |", "| --- | --- | --- | --- |"]
    for name, entry in (calibration.get("recall_by_condition") or {}).items():
        lines.append(f"| {name} | {entry['rate']} | {entry['ci95'][0]}-{entry['ci95'][1]} | {entry['trials']} |")
    lines += _condition_text(report)
    if not report.get("recall_target_met", True):
        lines += ["", f"**Target recall not reached.** {report['recall_shortfall']} This release was published "
                  "because the build config says `on_recall_shortfall: warn`."]
    return "\n".join(lines) + "\n"


def _condition_text(report: dict) -> list[str]:
    """A sentence on the condition offsets (none for a release whose leak check had no condition detector)."""
    offsets = report["calibration"].get("condition_offsets") or {}
    if not offsets:
        return []
    clips = report.get("clips_by_detected_condition") or {}
    judged = "; ".join(f"{name}: offset {offset:+.4f}, {clips.get(name, 0)} clip(s) of this release"
                       for name, offset in offsets.items())
    return ["", "A clip whose voice is detected as reverberant (a linear detector on its speaker embedding, trained on "
            "the impostor cohort's voices in synthetic rooms) is judged against what reverberant impostors score: its "
            f"score less the calibrated offset (a negative one raises it) meets the threshold ({judged})."]


def _copy_text(copy: dict | None, privacy: dict) -> str:
    """The copy check in one or two sentences (releases made before it existed have no entry)."""
    if not copy or not copy.get("applies"):
        return "No copy check: the model did not learn from a private corpus."
    spread = copy.get("relative_distance_quantiles") or {}
    return (f"The model learned from a private corpus, so every clip was also checked for copies of it ({copy['measure']}): "
            f"a clip closer than {copy['ratio']} of the closest of {copy['held_out_recordings']} held-out recording(s) "
            f"is a copy; {copy['rejected_first_pass']} were rejected on first sampling (`on_copy: {copy['on_copy']}`) "
            f"and {privacy.get('copy', 0)} remain excluded. The judged clips' median relative distance is "
            f"{spread.get('0.5', 'n/a')} (5th percentile {spread.get('0.05', 'n/a')}).{_fingerprint_text(copy)}")


def _fingerprint_text(copy: dict) -> str:
    """The near-copy detector in one sentence (none when the run's leak check predates it)."""
    printed = copy.get("near_copy_detector")
    if not printed:
        return ""
    return (f" A clip whose audio fingerprint (Chromaprint) came within a bit error rate of {printed['max_ber']} of "
            f"a corpus recording's over about 2 s would be a copy too: {printed['clips_fingerprinted']} clip(s) were "
            f"long enough to fingerprint ({printed['min_seconds']:.1f} s), against "
            f"{printed['corpus_recordings_fingerprinted']} corpus recording(s).")
