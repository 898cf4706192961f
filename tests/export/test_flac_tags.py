"""Vorbis comments written by our few lines, read back by mutagen: the audio is untouched, relabelling replaces."""

import io

import numpy as np
import pytest
import soundfile as sf
from mutagen.flac import FLAC

from pipeline.export.flac_tags import read_tags, write_tags
from pipeline.export.writer import copy_labelled


def _flac(tmp_path, **metadata):
    audio = np.sin(np.linspace(0, 300, 44_100)).astype(np.float32) * 0.3
    path = tmp_path / "clip.flac"
    with sf.SoundFile(path, "w", 44_100, 1, format="FLAC", subtype="PCM_16") as handle:
        for key, value in metadata.items():  # libsndfile writes them as Vorbis comments
            setattr(handle, key, value)
        handle.write(audio)
    return path, audio


def test_tags_replace_the_old_ones_keep_the_audio_and_read_back_with_mutagen(tmp_path):
    path, _ = _flac(tmp_path, title="a field recording", comment="private note")
    original = path.read_bytes()
    assert FLAC(path).tags["TITLE"] == ["a field recording"]
    labelled = write_tags(original, {"AI_GENERATED": "true", "CLIP_ID": "default-v1-00003", "COMMENT": "ünïcode ok"})
    assert write_tags(labelled, {"AI_GENERATED": "true", "CLIP_ID": "default-v1-00003", "COMMENT": "ünïcode ok"}) == labelled
    (tmp_path / "labelled.flac").write_bytes(labelled)
    tags = FLAC(tmp_path / "labelled.flac").tags
    assert sorted(key.upper() for key in tags.keys()) == ["AI_GENERATED", "CLIP_ID", "COMMENT"]  # TITLE is gone
    assert tags["AI_GENERATED"] == ["true"] and tags["COMMENT"] == ["ünïcode ok"]
    assert read_tags(labelled) == {"AI_GENERATED": "true", "CLIP_ID": "default-v1-00003", "COMMENT": "ünïcode ok"}
    before, _ = sf.read(io.BytesIO(original), dtype="int16")
    after, _ = sf.read(tmp_path / "labelled.flac", dtype="int16")
    assert np.array_equal(before, after)
    assert copy_labelled(path, tmp_path / "copied.flac", {"AI_GENERATED": "true", "CLIP_ID": "default-v1-00003",
                                                          "COMMENT": "ünïcode ok"})[0] == len(labelled)
    assert (tmp_path / "copied.flac").read_bytes() == labelled


def test_what_is_not_flac_or_is_cut_short_is_refused(tmp_path):
    path, _ = _flac(tmp_path)
    with pytest.raises(ValueError, match="not a FLAC"):
        read_tags(b"RIFF....WAVE")
    with pytest.raises(ValueError, match="ends early"):
        read_tags(write_tags(path.read_bytes(), {"A": "b"})[:60])
