"""The privacy benchmark's frozen split (`benchmarks/privacy_split.json`) stays apart from what the leak check
learns from: no held-out voice is a cohort voice (the cohort is calibration's impostors and the fine-tuned encoder's
training voices), and `held_out_espeak2`'s espeak-ng variants are used nowhere else (an espeak-ng voice is mostly its
variant: benchmarks/PRIVACY.md, 2026-12-07)."""

import importlib.util
from pathlib import Path

from pipeline.privacy.cohort import COHORT_VOICES

# the benchmark's own reading of the split, loaded by path: benchmarks/ is not a package, and putting it on sys.path
# would let its generation.py, training.py ... shadow other modules for the rest of the test session
_spec = importlib.util.spec_from_file_location(
    "privacy_corpus", Path(__file__).resolve().parents[2] / "benchmarks" / "privacy_corpus.py")
privacy_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(privacy_corpus)

SPLIT = privacy_corpus.load_split()
PARTS = privacy_corpus.split_parts()
HELD_OUT = [part for part in PARTS if part.startswith("held_out")]


def _voices(part: str) -> set[tuple[str, str]]:
    spec = SPLIT[part]
    return {tuple(pair) for group in ("reference", "another_synthesiser", "impostors") for pair in spec[group].values()}


def _variants(voices) -> set[str]:
    return {voice.split("+", 1)[1].lower() for engine, voice in voices if engine == "espeak-ng" and "+" in voice}


def test_no_held_out_voice_is_a_cohort_voice():
    cohort = {(engine, voice) for _, engine, voice in COHORT_VOICES}
    assert set(HELD_OUT) >= {"held_out", "held_out_espeak", "held_out_tools", "held_out_espeak2"}
    for part in HELD_OUT:
        assert not _voices(part) & cohort, part


def test_held_out_espeak2_shares_no_espeak_variant_with_anything_else():
    elsewhere = _variants((engine, voice) for _, engine, voice in COHORT_VOICES)
    for part in PARTS:
        if part != "held_out_espeak2":
            elsewhere |= _variants(_voices(part))
    own = _variants(_voices("held_out_espeak2"))
    assert len(own) == 9 and not own & elsewhere
    assert {"f4", "f3", "m6"} <= elsewhere  # the check sees the variants that held_out_espeak shares
