"""The privacy benchmark's frozen split (`benchmarks/privacy_split.json`) stays apart from what the leak check
learns from: no held-out voice is a cohort voice (the cohort is calibration's impostors and the fine-tuned encoder's
training voices), and `held_out_espeak2`'s espeak-ng variants are used nowhere else (an espeak-ng voice is mostly its
variant: benchmarks/PRIVACY.md, 2026-12-07)."""

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from pipeline.privacy.cohort import COHORT_VOICES
from pipeline.privacy.test_voices import _espeak, espeak_data

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


_made_spec = importlib.util.spec_from_file_location(
    "privacy_made_voices", Path(__file__).resolve().parents[2] / "benchmarks" / "privacy_made_voices.py")
privacy_made_voices = importlib.util.module_from_spec(_made_spec)
_made_spec.loader.exec_module(privacy_made_voices)


MADE_PARTS = {"tuning_made": (12, 0.90), "tuning_made2": (18, 0.85)}  # voices, the pick rule's cut


@pytest.mark.parametrize("part", sorted(MADE_PARTS))
def test_made_parts_read_with_their_own_committed_variants_used_nowhere_else(part):
    spec = SPLIT[part]
    own = _voices(part)
    count, cut = MADE_PARTS[part]
    assert len(own) == count and not set(spec["reference"]) & set(spec["impostors"])
    assert f"under {cut}" in spec["about"]
    for engine, voice in own:
        base, name = voice.split("+")
        # the committed text is what the generator draws from the voice's seed, on the base voice it drew
        assert engine == "espeak-ng"
        assert privacy_made_voices.made_variant(int(name[4:])) == (base, spec["variants"][name])
    elsewhere = _variants((engine, voice) for _, engine, voice in COHORT_VOICES)
    elsewhere |= {voice.split("+", 1)[1].lower() for voice in privacy_made_voices.TRAINING_EXTRAS}
    for other in PARTS:
        if other != part:
            elsewhere |= _variants(_voices(other))
    assert not _variants(own) & elsewhere
    # training voices are drawn from seed 1001 on, so no part's seed is ever one an encoder learned from
    assert all(not 1001 <= int(voice.split("+")[1][4:]) < 2000 for _, voice in own)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="make deps installs espeak-ng")
def test_made_variants_are_seeded_and_each_is_its_own_voice(tmp_path):
    first, second = privacy_made_voices.made_variant(1), privacy_made_voices.made_variant(2)
    assert first == privacy_made_voices.made_variant(1) and first != second
    data = espeak_data({"made001": first[1], "made002": second[1]}, tmp_path / "data")
    audio = {}
    for voice in ("en+made001", "en+made002", "en"):
        _espeak(voice, "The birch canoe slid on the smooth planks.", tmp_path / f"{voice}.wav",
                data if "made" in voice else None)
        audio[voice], _ = sf.read(tmp_path / f"{voice}.wav", dtype="float32")
    for one, other in [("en+made001", "en+made002"), ("en+made001", "en"), ("en+made002", "en")]:
        assert audio[one].shape != audio[other].shape or not np.allclose(audio[one], audio[other]), (one, other)
    assert espeak_data({"made001": first[1], "made002": second[1]}, tmp_path / "data") == tmp_path / "data"
    with pytest.raises(ValueError, match="installed espeak-ng variant"):
        espeak_data({"m1": first[1]}, tmp_path / "clash")
