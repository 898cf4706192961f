"""The private corpus: listing, validation (every bad file named at once), fingerprint, holdout, config rules."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from pipeline.config import load_config
from pipeline.errors import BadInput, ConfigError
from pipeline.testing import run_cli, sine, tone_voices, write_config
from pipeline.training.corpus import fingerprint, list_corpus, load_corpus, split, validate


def test_folder_corpus_is_listed_in_order_fingerprinted_and_split_with_a_stable_holdout(tmp_path):
    corpus = tone_voices(tmp_path / "corpus", files=5)
    files = list_corpus(corpus)
    assert [(f.speaker, f.path.name) for f in files][:2] == [("spk_alpha", "utterance_00.wav"),
                                                             ("spk_alpha", "utterance_01.wav")]
    train, holdout = split(files, 0.2)
    assert len(holdout) == 2 and len(train) == 8 and not {f.path for f in train} & {f.path for f in holdout}
    # adding a file reshuffles nothing: the new holdout is drawn from the old one plus the new file
    new = corpus / "spk_bravo" / "utterance_09.wav"
    sf.write(new, sine(440.0, 0.5, rate=16_000) * 0.5, 16_000)
    _, holdout2 = split(list_corpus(corpus), 0.2)
    assert {f.path for f in holdout2} <= {f.path for f in holdout} | {new}
    # the fingerprint changes when a file's content changes, not when nothing does
    before = fingerprint(list_corpus(corpus))
    assert fingerprint(list_corpus(corpus)) == before
    sf.write(corpus / "spk_alpha" / "utterance_00.wav", sine(999.0, 0.5, rate=16_000), 16_000)
    assert fingerprint(list_corpus(corpus)) != before


def test_manifest_corpus_reads_lyrics_genre_artist_and_names_every_bad_row(tmp_path):
    tone_voices(tmp_path / "audio", files=2)
    manifest = tmp_path / "corpus.csv"
    manifest.write_text("speaker_id,path,lyrics,genre,artist\n"
                        "p1,audio/spk_alpha/utterance_00.wav,hello there,pop,\n"
                        "p2,audio/spk_bravo/utterance_01.wav,,,\n")
    files = list_corpus(manifest)
    assert [(f.speaker, f.lyrics, f.genre, f.artist) for f in files] == [
        ("p1", "hello there", "pop", "unknown"), ("p2", "", "unknown", "unknown")]
    manifest.write_text("speaker_id,path\n,audio/spk_alpha/utterance_00.wav\np3,audio/missing.wav\n")
    with pytest.raises(BadInput) as error:
        list_corpus(manifest)
    assert "2 bad row(s)" in str(error.value) and "line 2" in str(error.value) and "missing.wav" in str(error.value)


def test_validation_lists_unreadable_empty_and_low_rate_files_together(tmp_path):
    corpus = tone_voices(tmp_path / "corpus", files=2)
    (corpus / "spk_alpha" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    sf.write(corpus / "spk_alpha" / "empty.wav", np.zeros(0, np.float32), 16_000)
    sf.write(corpus / "spk_bravo" / "phone.wav", sine(300.0, 0.5, rate=8_000), 8_000)
    with pytest.raises(BadInput) as error:
        validate(list_corpus(corpus), 16_000)
    message = str(error.value)
    assert "3 of 7 file(s)" in message
    assert "broken.wav: unreadable" in message and "empty.wav: empty" in message
    assert "phone.wav: recorded at 8000 Hz; source.min_sample_rate_hz is 16000" in message


def test_train_cli_refuses_a_bad_corpus_with_exit_2_and_writes_no_model(tmp_path):
    corpus = tone_voices(tmp_path / "corpus", files=2)
    (corpus / "spk_alpha" / "broken.wav").write_bytes(b"nope")
    config = write_config(tmp_path, corpus, corpus=True)
    result = run_cli("train", str(config))
    assert result.returncode == 2, result.stderr
    assert "broken.wav: unreadable" in result.stderr and "source.corpus" in result.stderr
    assert not (tmp_path / "models").exists()


def test_train_refuses_a_corpus_too_small_for_the_preset(tmp_path):
    corpus = tone_voices(tmp_path / "corpus", files=2)  # 4 files of 0.5 s: 1.5 s after the holdout
    from pipeline.training.stage import train

    with pytest.raises(BadInput, match=r"1\.5 s of training audio .* needs at least 4 s"):
        train(load_config(write_config(tmp_path, corpus, corpus=True)), quiet=True)


def test_the_corpus_is_the_reference_set_and_cannot_be_left_unprotected(tmp_path):
    corpus = tone_voices(tmp_path / "corpus")
    loaded = load_config(write_config(tmp_path, corpus, corpus=True))
    assert loaded.reference_dir == corpus.resolve() == loaded.corpus
    both = write_config(tmp_path, corpus, corpus=True, name="both.yaml", **{"privacy.reference_dir": str(corpus)})
    with pytest.raises(ConfigError, match="corpus's speakers must be protected too"):
        load_config(both)
    orphan = write_config(tmp_path, corpus, name="orphan.yaml", **{"generation.model": "latest"})
    with pytest.raises(ConfigError, match="a trained model needs source.corpus"):
        load_config(orphan)


def test_load_corpus_holds_out_at_least_one_file(tmp_path):
    corpus = load_corpus(tone_voices(tmp_path / "c", speakers=("a_speaker",), files=2), 0.01, 16_000)
    assert len(corpus.holdout) == 1 and len(corpus.train) == 1 and corpus.speakers == ["a_speaker"]
