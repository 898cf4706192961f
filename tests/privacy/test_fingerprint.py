"""The near-copy detector: Chromaprint fingerprints find a corpus recording re-encoded, under noise or spliced into
other audio, never take a new recording of the same voice for a copy, and catch what the log-mel distance cannot:
a copy of a held-out recording (the distance compares clips with the training recordings only)."""

import numpy as np
import pytest

from pipeline.privacy.copycheck import build_baseline, clip_dcr
from pipeline.privacy.fingerprint import MAX_BER, closest, distance, fingerprint
from pipeline.training.corpus import read_audio

RATE = 44_100


@pytest.fixture(scope="module")
def long_recordings(reference_dir):
    """Per test voice, recordings of three sentences each (6.9-7.7 s: Chromaprint needs about 4.6 s)."""
    found = {}
    for voice in sorted(p for p in reference_dir.iterdir() if p.is_dir()):
        sentences = [read_audio(path) for path in sorted(voice.glob("*.wav"))]
        found[voice.name] = [np.concatenate(sentences[k: k + 3]) for k in range(0, len(sentences) - 2, 3)]
    return found


def test_copies_are_near_and_new_recordings_of_the_same_voice_are_not(long_recordings):
    import librosa

    rng = np.random.default_rng(0)
    for voice, recordings in long_recordings.items():
        source, other = recordings[0], recordings[1]
        printed = fingerprint(source, RATE)
        assert printed.dtype == np.uint32 and len(printed) >= 30
        loud = np.sqrt(np.mean(source.astype(np.float64) ** 2))
        copies = {
            "itself": source,
            "under white noise at 20 dB": source + 0.1 * loud * rng.standard_normal(source.size).astype(np.float32),
            "band-limited to 8 kHz": librosa.resample(librosa.resample(source, orig_sr=RATE, target_sr=16_000),
                                                      orig_sr=16_000, target_sr=RATE),
            "4 s of it spliced into new speech": np.concatenate([other[: 2 * RATE], source[RATE: 5 * RATE],
                                                                 other[2 * RATE:]]),
        }
        for name, audio in copies.items():
            assert distance(fingerprint(audio, RATE), printed) < MAX_BER, (voice, name)
        for new in recordings[1:]:  # other sentences of the same voice: new, however alike the voice
            assert distance(fingerprint(new, RATE), printed) >= MAX_BER, voice


def test_audio_too_short_to_fingerprint_is_not_judged(long_recordings):
    recording = long_recordings["spk_awb"][0]
    assert len(fingerprint(recording[: 2 * RATE], RATE)) == 0  # Chromaprint's first item comes after ~2.6 s
    short = fingerprint(recording[: 4 * RATE], RATE)  # some items, fewer than a 2 s window
    assert 0 < len(short) and distance(short, fingerprint(recording, RATE)) is None
    assert closest(short, [fingerprint(recording, RATE)]) is None
    assert closest(fingerprint(recording, RATE), []) is None


def test_the_gate_finds_a_copy_of_a_held_out_recording_that_the_distance_cannot(long_recordings, tmp_path):
    """Held-out recordings are private too (a continuation or re-rendering may start from one): a clip that is one
    of them is a copy by its fingerprint, though its log-mel distance to the training recordings is the yardstick
    itself. A new recording stays a pass; the baseline's fingerprints survive its cache."""
    from pipeline.privacy.copycheck import CopyBaseline
    from pipeline.privacy.leakcheck import CopyChecker

    train = long_recordings["spk_awb"][:2] + long_recordings["spk_rms"][:2]
    held_out = [long_recordings["spk_awb"][2], long_recordings["spk_rms"][2]]
    new = long_recordings["spk_awb"][3]
    built = build_baseline(train, held_out, ratio=0.7)
    built.save(tmp_path / "baseline.npz")
    baseline = CopyBaseline.load(tmp_path / "baseline.npz")
    assert [list(f) for f in baseline.fingerprints] == [list(f) for f in built.fingerprints]
    assert len(baseline.fingerprints) == 6
    checker = CopyChecker(baseline)
    row = lambda: {"verdict": "pass", "copy_dcr": None, "copy_ber": None, "error": None}  # noqa: E731
    copied = checker.check_audio(row(), held_out[1], RATE)
    assert copied["verdict"] == "copy" and copied["copy_ber"] < MAX_BER
    assert copied["copy_dcr"] >= baseline.threshold == pytest.approx(built.threshold)  # the distance alone: a pass
    assert clip_dcr(baseline, held_out[1]) == copied["copy_dcr"]
    fresh = checker.check_audio(row(), new, RATE)
    assert fresh["verdict"] == "pass" and fresh["copy_ber"] >= MAX_BER
    short = checker.check_audio(row(), train[0][: 2 * RATE], RATE)  # too short to fingerprint: the distance judges
    assert short["copy_ber"] is None and short["verdict"] == "copy"
