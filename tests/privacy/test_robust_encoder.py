"""The fine-tuned GE2E (`robust_encoder.py`): its training pieces, and the shipped weights doing what they were
trained for on a voice they never heard."""

import shutil

import numpy as np
import pytest
import soundfile as sf

from pipeline.files import sha256_file
from pipeline.privacy.encoder import ROBUST, SHIPPED, encoder_version, load_encoder
from pipeline.privacy.robust_encoder import (ROBUST_WEIGHTS, ROBUST_WEIGHTS_SHA256, band_room, distill, partial_pairs,
                                             relational_loss, transform)
from pipeline.privacy.test_voices import _espeak
from pipeline.privacy.transforms import mix_at_snr, tone_chord

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="make deps installs espeak-ng")


def _utterance(path, voice: str, text: str) -> np.ndarray:
    """`voice` reading `text`, written to `path`: (samples,) @ 16 kHz."""
    import librosa

    _espeak(voice, text, path)
    audio, rate = sf.read(path, dtype="float32")
    return librosa.resample(audio, orig_sr=rate, target_sr=16_000)


def test_shipped_weights_are_the_recorded_ones_and_name_the_encoder_version():
    assert sha256_file(ROBUST_WEIGHTS) == ROBUST_WEIGHTS_SHA256
    assert ROBUST_WEIGHTS_SHA256[:12] in encoder_version(ROBUST)
    assert encoder_version(ROBUST) != encoder_version(SHIPPED)  # caches of one never serve the other
    assert load_encoder().name == ROBUST


def test_damaged_weights_refuse_to_load(monkeypatch, tmp_path):
    import pipeline.privacy.robust_encoder as robust

    damaged = tmp_path / ROBUST_WEIGHTS.name
    data = bytearray(ROBUST_WEIGHTS.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside a weight tensor
    damaged.write_bytes(bytes(data))
    monkeypatch.setattr(robust, "ROBUST_WEIGHTS", damaged)
    with pytest.raises(RuntimeError, match="missing or damaged"):
        load_encoder(ROBUST)


def test_training_transformations_are_seeded_and_keep_the_length():
    voice = tone_chord(16_000 * 2, seed=1)  # (samples,) @ 16 kHz
    kinds = set()
    for seed in range(40):
        kind, once = transform(voice, np.random.default_rng(seed))
        _, again = transform(voice, np.random.default_rng(seed))
        assert once.shape == voice.shape and np.array_equal(once, again), kind
        assert not np.allclose(once, voice), kind
        kinds.add(kind)
    assert len(kinds) == 7  # every kind of transformation came up and was checked
    wet = band_room(voice, np.random.default_rng(0))
    assert wet.shape == voice.shape and np.max(np.abs(wet)) == pytest.approx(0.9, abs=1e-3)


def test_relational_loss_is_the_mean_squared_cosine_difference_over_pairs():
    import torch

    teacher = torch.eye(3)  # three voices, pairwise cosine 0 clean
    assert float(relational_loss(teacher.clone(), teacher)) == 0.0
    student = torch.stack([teacher[0], teacher[0], teacher[1]])  # the first two heard as one voice: cosine 1
    assert float(relational_loss(student, teacher)) == pytest.approx(1 / 3)  # pairs (0,1)=1, (0,2)=0, (1,2)=0
    halfway = torch.nn.functional.normalize(torch.stack([teacher[0], teacher[0] + teacher[1], teacher[2]]), dim=1)
    assert float(relational_loss(halfway, teacher)) == pytest.approx(0.5 / 3)  # cos(e0, e0+e1) = 1/sqrt(2)


def test_distillation_brings_transformed_partials_towards_their_clean_selves(tmp_path):
    import torch
    from resemblyzer import VoiceEncoder

    files = []
    for number, text in enumerate(["The birch canoe slid on the smooth planks of the old boat house.",
                                   "Glue the sheet to the dark blue background and let it dry overnight."]):
        path = tmp_path / f"{number}.wav"
        _espeak("en+m3", text, path)
        files.append(path)
    clean, transformed, kinds = partial_pairs(files, variants=2)
    assert clean.shape == transformed.shape and clean.shape[1:] == (160, 40) and len(kinds) == len(clean) > 4
    teacher = VoiceEncoder("cpu", verbose=False)
    student = distill(clean, transformed, epochs=3, learning_rate=1e-3, batch=8, log=lambda line: None)
    with torch.no_grad():
        target = teacher(torch.from_numpy(clean))
        before = (teacher(torch.from_numpy(transformed)) * target).sum(1).mean()
        after = (student(torch.from_numpy(transformed)) * target).sum(1).mean()
    assert after > before + 0.02


def test_robust_weights_hear_a_new_voice_under_music_closer_to_its_clean_self(tmp_path):
    """espeak-ng's en-us+m6 is in no training voice list (cohort.COHORT_VOICES); under sampled instruments at
    0 dB (enrolment's music, seed 24) the fine-tuned encoder keeps it nearer its clean embedding than resemblyzer's
    weights do, and two other voices no nearer to it than before."""
    from pipeline.privacy.music import sampled_band

    texts = ["A large size in stockings is hard to sell to the people in town.",
             "The wrist was badly strained and hung limp from the end of the arm."]
    voice = [_utterance(tmp_path / f"voice-{number}.wav", "en-us+m6", text) for number, text in enumerate(texts)]
    others = [_utterance(tmp_path / f"other-{number}.wav", other, texts[0])
              for number, other in enumerate(("en+f2", "en-gb-x-rp+f1"))]
    shipped, robust = load_encoder(SHIPPED), load_encoder(ROBUST)

    def closeness(encoder):
        clean = [encoder.embed(audio, 16_000) for audio in voice]
        mixed = [encoder.embed(mix_at_snr(audio, sampled_band(audio.size, 24), 0.0), 16_000) for audio in voice]
        impostor = [encoder.embed(audio, 16_000) for audio in others]
        same = np.mean([c @ m for c, m in zip(clean, mixed)])
        different = np.max([c @ i for c in clean for i in impostor])
        return same, different

    (shipped_same, shipped_other), (robust_same, robust_other) = closeness(shipped), closeness(robust)
    assert robust_same > shipped_same + 0.03
    assert robust_same - robust_other > shipped_same - shipped_other


def test_extra_and_made_voices_train_beside_the_cohort_or_alone(monkeypatch, tmp_path):
    import pipeline.privacy.robust_encoder as robust
    from pipeline.privacy.cohort import COHORT_VOICES
    from pipeline.privacy.cohort import _available as cohort_available

    monkeypatch.setattr(robust, "UTTERANCES_PER_VOICE", 1)
    alone = robust.synthesise_voices(tmp_path / "alone", ("en+Alicia", "en-us+paul"), cohort=False)
    assert [path.parent.name for path in alone] == ["extra_en-us_paul", "extra_en_Alicia"]
    again = robust.synthesise_voices(tmp_path / "alone", ("en+Alicia", "en-us+paul"), cohort=False)
    assert again == alone and sf.read(alone[0])[0].size > 16_000  # written once, a sentence long
    variant = "language variant\nname made001\ngender female\npitch 190 260\nformant 1 115 100 100\n"
    made_alone = robust.synthesise_voices(tmp_path / "made", cohort=False, made={"made001": ("en-us", variant)})
    assert [path.parent.name for path in made_alone] == ["made_made001"]
    assert (tmp_path / "made" / "espeak-ng" / "espeak-ng-data" / "voices" / "!v" / "made001").read_text() == variant
    beside = robust.synthesise_voices(tmp_path / "beside", ("en+Alicia",))
    installed = {voice_id for voice_id, engine, voice in COHORT_VOICES if cohort_available(engine, voice)}
    assert {path.parent.name for path in beside} == installed | {"extra_en_Alicia"}
    assert len(beside) == len(installed) + 1
    monkeypatch.setattr(robust, "synthesise_voices", lambda *args, **kwargs: pytest.fail("trained on nothing"))
    with pytest.raises(SystemExit):  # --without-cohort and no extra voice: nothing to learn from
        robust.main(["--out", str(tmp_path / "none"), "--without-cohort"])


def test_cohort_voices_left_out_are_not_learned_from_even_where_an_earlier_run_wrote_them(monkeypatch, tmp_path,
                                                                                           capsys):
    import pipeline.privacy.robust_encoder as robust
    from pipeline.privacy.cohort import COHORT_VOICES
    from pipeline.privacy.cohort import _available as cohort_available

    monkeypatch.setattr(robust, "UTTERANCES_PER_VOICE", 1)
    installed = {voice_id for voice_id, engine, voice in COHORT_VOICES if cohort_available(engine, voice)}
    everyone = robust.synthesise_voices(tmp_path)
    assert {path.parent.name for path in everyone} == installed and "flite_slt" in installed
    fewer = robust.synthesise_voices(tmp_path, leave_out=("flite_slt", "flite_kal16"))  # same folder: files kept
    assert {path.parent.name for path in fewer} == installed - {"flite_slt", "flite_kal16"}
    assert (tmp_path / "audio" / "flite_slt" / "000.wav").is_file()  # written by the first run, not learned from
    with pytest.raises(ValueError, match="flite_ked.*not cohort voices.*flite_awb"):
        robust.synthesise_voices(tmp_path, leave_out=("flite_ked",))
    with pytest.raises(SystemExit):
        robust.main(["--out", str(tmp_path), "--leave-out", "flite_ked"])
    assert "flite_ked" in capsys.readouterr().err


def test_anchor_voices_are_learned_from_clean_only(monkeypatch, tmp_path):
    import pipeline.privacy.robust_encoder as robust

    text = "The birch canoe slid on the smooth planks, and glue the sheet to the dark blue background."
    for folder in ("anchor_made001", "made_made002"):
        (tmp_path / folder).mkdir()
        _utterance(tmp_path / folder / "000.wav", "en", text)
    anchor, plain = tmp_path / "anchor_made001" / "000.wav", tmp_path / "made_made002" / "000.wav"
    clean, heard, kinds = partial_pairs([anchor], variants=3)
    assert len(clean) >= 2 and set(kinds) == {"clean (anchor)"}
    assert np.array_equal(clean, heard)  # each clean partial paired with itself, once: no transformation
    plain_clean, plain_heard, plain_kinds = partial_pairs([plain], variants=3)
    assert len(plain_clean) == 3 * len(clean)  # the same audio as a transformed voice: three variants of each
    assert "clean (anchor)" not in plain_kinds and not np.allclose(plain_clean, plain_heard)
    # an anchor sorted before a voice leaves that voice's seeded transformations as they were without it
    both_clean, both_heard, both_kinds = partial_pairs([anchor, plain], variants=3)
    assert np.array_equal(both_heard[len(clean):], plain_heard) and both_kinds[len(clean):] == plain_kinds
    # synthesised beside the made voices, under their own prefix, from the same data folder
    monkeypatch.setattr(robust, "UTTERANCES_PER_VOICE", 1)
    variant = "language variant\nname made001\ngender female\npitch 190 260\nformant 1 115 100 100\n"
    files = robust.synthesise_voices(tmp_path / "train", cohort=False, made={"made002": ("en", variant.replace(
        "made001", "made002"))}, anchors={"made001": ("en-us", variant)})
    assert [path.parent.name for path in files] == ["anchor_made001", "made_made002"]
