"""Enrolment music played by sampled instruments (FluidSynth, TimGM6mb): seeded, at the level asked, fails clearly."""

import struct

import numpy as np
import pytest

from pipeline.errors import BadInput
from pipeline.privacy import music
from pipeline.privacy.transforms import ENROLMENT_VARIANTS, RATE


def test_a_score_is_played_the_same_for_one_seed_and_differently_for_another():
    first, again, other = (music.sampled_band(3 * RATE, seed) for seed in (7, 7, 8))
    assert first.shape == (3 * RATE,) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert not np.allclose(first, other)
    assert np.max(np.abs(first)) == pytest.approx(0.9, abs=1e-6)  # normalised to the peak render promises
    # music all through: every half second holds sound (the drum kit alone hits twice a second or more)
    halves = first[: 6 * (RATE // 2)].reshape(6, RATE // 2)
    assert np.all(np.sqrt(np.mean(halves ** 2, axis=1)) > 0.01)


def test_the_midi_file_holds_every_event_in_its_one_track():
    events, bpm = music.score(2.0, seed=3, palette=music.ENROLMENT_PALETTE)
    data = music.midi_file(events, 480, int(60e6 / bpm))
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, 480)
    assert data[14:18] == b"MTrk"
    (length,) = struct.unpack(">I", data[18:22])
    assert len(data) == 22 + length and data.endswith(b"\xff\x2f\x00")
    notes_on = sum(1 for _, message in events if message[0] & 0xF0 == 0x90)
    assert data.count(b"\x99\x24") >= 1  # the kick drum (channel 10, note 36) is in the file
    assert notes_on == sum(1 for _, message in events if message[0] & 0xF0 == 0x80)  # every note ends


@pytest.mark.parametrize("variant, snr_db", [("sampled0db", 0.0), ("sampled6db", 6.0)])
def test_enrolment_hears_a_voice_under_sampled_instruments_at_its_snr(variant, snr_db):
    t = np.arange(2 * RATE) / RATE
    voice = (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # quiet: the mix needs no peak scaling
    mixed = ENROLMENT_VARIANTS[variant](voice)
    accompaniment = mixed.astype(np.float64) - voice
    ratio_db = 20 * np.log10(np.sqrt(np.mean(voice.astype(np.float64) ** 2)) / np.sqrt(np.mean(accompaniment ** 2)))
    assert ratio_db == pytest.approx(snr_db, abs=0.05)


def test_without_fluidsynth_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(music.shutil, "which", lambda name: None)
    with pytest.raises(BadInput, match="fluidsynth timgm6mb-soundfont"):
        music.sampled_band(RATE, 1)


def test_an_index_needing_enrolment_music_without_fluidsynth_fails_once_saying_what_to_install(
        monkeypatch, reference_dir, tmp_path):
    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.reference import build_index

    monkeypatch.setattr(music.shutil, "which", lambda name: None)
    with pytest.raises(BadInput) as raised:  # an empty cache: every file would need the music
        build_index(reference_dir, load_encoder(), tmp_path / "cache", canaries_per_speaker=1, with_cohort=False)
    assert "apt-get install fluidsynth timgm6mb-soundfont" in str(raised.value)
    assert "unusable" not in str(raised.value)  # the tool is missing, not the files unusable
