"""The privacy benchmark's audio: voices and transformed clips for one part of the frozen split.

    python benchmarks/privacy_corpus.py OUT_DIR --part held_out|held_out_espeak|held_out_espeak2|held_out_tools|tuning|
                                                       tuning_espeak|tuning_made|tuning_made2

writes
  OUT_DIR/<part>/reference/<speaker>/<nn>.wav    the reference set (16 kHz, as a user would give it)
  OUT_DIR/<part>/clips/<kind>/<transform>/<speaker>-<nn>.wav   clips at 44.1 kHz, kind = leak | other_voice | no_voice
and OUT_DIR/<part>/clips.csv (path, kind, transform, speaker). Every choice is seeded; existing
output is reused. The held-out part's transformations are done with sox only (another implementation
than anything the pipeline enrols or calibrates with); the tuning part's with the pipeline's own
calibration conditions (numpy/scipy) and with a third family that neither the pipeline nor the held-out
part uses (`THIRD_FAMILY`: a Schroeder reverberator, FM-synth music with a square bass and noise drums;
`HARD_ROOMS`: a feedback-delay-network hall as long and wet as the held-out part's sox reverbs), so tuning
never sees a held-out implementation, and a design is not chosen only on the conditions its own
calibration is made of. `held_out_tools` puts the held-out voices under a fourth family made with tools
nothing else here uses (`TOOLS_TRANSFORMS`: rubberband, pyroomacoustics, FluidSynth with a General MIDI sound
font, sox's GSM codec; `make bench-deps` installs them). The tuning parts also hold music played by sampled
instruments from another sound font (`SAMPLED_FAMILY`, and "sampled music only" clips with no voice).
`tuning_made`'s and `tuning_made2`'s voices are espeak-ng variants made from seeds (`privacy_made_voices.py`): the
split commits each variant's text, and espeak-ng reads them from `OUT_DIR/<part>/_espeak-ng/`
(`test_voices.espeak_data`). A part may set its own utterance counts (`tuning_made`: six impostors of six utterances,
`tuning_made2` twelve of three, where others have three of twelve).
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from pipeline.privacy.music import Palette, render, sampled_band, score  # noqa: E402 - the root is on the path now
SPLIT_FILE = REPO / "benchmarks" / "privacy_split.json"
CLIP_RATE = 44_100
SENTENCES = (  # Harvard sentences (IEEE 1969), public domain
    "The birch canoe slid on the smooth planks.", "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.", "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.", "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.", "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.", "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.", "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.", "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.", "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.", "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.", "The girl at the booth sold fifty bonds.",
)


def load_split() -> dict:
    return json.loads(SPLIT_FILE.read_text())


def split_parts() -> tuple[str, ...]:
    """The split's parts (those with a reference set), in the file's order."""
    return tuple(part for part, spec in load_split().items()
                 if isinstance(spec, dict) and isinstance(spec.get("reference"), dict))


def synthesise(engine: str, voice: str, text: str, path: Path, espeak_path: Path | None = None) -> None:
    """`text` read by `voice` of `engine` (flite, festival's text2wave or espeak-ng; with `espeak_path`, espeak-ng
    reads its data there: `test_voices.espeak_data`, for made variants), written to `path` as 16 kHz mono 16-bit."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.wav"
        if engine == "flite":
            subprocess.run(["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True, capture_output=True)
        elif engine == "espeak-ng":
            subprocess.run(["espeak-ng", *([f"--path={espeak_path}"] if espeak_path else []), "-v", voice, "-w",
                            str(raw), text], check=True, capture_output=True)
        else:
            txt = Path(scratch) / "t.txt"
            txt.write_text(text)
            subprocess.run(["text2wave", "-eval", f"(voice_{voice})", str(txt), "-o", str(raw)], check=True,
                           capture_output=True, timeout=120)
        subprocess.run(["sox", "-R", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(path)], check=True,
                       capture_output=True)


def _sox(args: list[str]) -> None:
    """sox in repeatable mode (-R: its random generators, e.g. `synth pluck` and dither, seeded the same on every
    call), so the held-out part is the same audio on every machine."""
    subprocess.run(["sox", "-R", *args], check=True, capture_output=True)


def sox_music(path: Path, seconds: float, seed: int) -> None:
    """Music with no voice made with sox synth: plucked chords, a bass and noise drums, seeded."""
    rng = random.Random(seed)
    notes = ["C", "D", "E", "F", "G", "A", "B"]
    with tempfile.TemporaryDirectory() as scratch:
        parts = []
        bar = rng.uniform(1.2, 2.4)
        for bar_index in range(int(np.ceil(seconds / bar))):
            root = rng.choice(notes)
            chord = Path(scratch) / f"bar{bar_index}.wav"
            _sox(["-n", "-r", "16000", "-c", "1", str(chord), "synth", f"{bar:.3f}",
                  "pluck", f"{root}3", "pluck", f"{rng.choice(notes)}4", "pluck", f"{rng.choice(notes)}4",
                  "square", f"{root}2", "remix", "-", "fade", "0", f"{bar:.3f}", f"{bar * 0.3:.3f}"])
            parts.append(str(chord))
        tune = Path(scratch) / "tune.wav"
        _sox([*parts, str(tune)])
        drums = Path(scratch) / "drums.wav"
        beat = bar / 4
        _sox(["-n", "-r", "16000", "-c", "1", str(drums), "synth", "0.06", "brownnoise", "fade", "0", "0.06", "0.05",
              "pad", "0", f"{beat - 0.06:.3f}", "repeat", str(int(seconds / beat) + 1)])
        _sox(["-m", str(tune), "-v", "0.6", str(drums), str(path), "trim", "0", f"{seconds}", "norm", "-1"])


def _read(path: Path) -> np.ndarray:
    audio, rate = sf.read(path, dtype="float32")
    assert rate == 16_000, path
    return audio


def _mix(voice: np.ndarray, other: np.ndarray, snr_db: float) -> np.ndarray:
    from pipeline.privacy.transforms import mix_at_snr

    return mix_at_snr(voice, other, snr_db)


def sox_transform(name: str, source: Path, target: Path, seed: int) -> None:
    """A held-out transformation of `source` (16 kHz wav) into `target` (44.1 kHz wav), with sox."""
    target.parent.mkdir(parents=True, exist_ok=True)
    out = ["-r", str(CLIP_RATE), "-b", "16", str(target)]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        if name == "clean":
            _sox([str(source), *out])
        elif name.startswith("pitch"):
            cents = int(name.split()[1]) * 100
            _sox([str(source), *out, "pitch", str(cents)])
        elif name == "reverb (medium room)":
            _sox([str(source), *out, "reverb", "50", "50", "70", "100", "10", "pad", "0", "0.5"])
        elif name == "reverb (large hall)":
            _sox([str(source), *out, "reverb", "90", "30", "100", "100", "30", "pad", "0", "1.0"])
        elif name == "tempo x1.1":
            _sox([str(source), *out, "tempo", "-s", "1.1"])
        elif name == "8 kHz band-limit":
            narrow = scratch / "narrow.wav"
            _sox([str(source), "-r", "8000", str(narrow)])
            _sox([str(narrow), *out])
        elif name == "ogg vorbis q0":
            coded = scratch / "coded.ogg"
            _sox([str(source), "-C", "0", str(coded)])
            _sox([str(coded), *out])
        elif name == "mp3 32 kbit/s":
            coded = scratch / "coded.mp3"
            _sox([str(source), "-C", "32", str(coded)])
            _sox([str(coded), *out])
        elif name in ("music 0 dB", "music 6 dB", "3 s in 10 s of music", "music only"):
            voice = _read(source) if name != "music only" else None
            seconds = 10.0 if name == "3 s in 10 s of music" else (voice.size / 16_000 if voice is not None else 6.0)
            music_path = scratch / "music.wav"
            sox_music(music_path, max(seconds, 1.0), seed)
            music = _read(music_path)
            if name == "music only":
                mixed = music
            elif name == "3 s in 10 s of music":
                mixed = _voice_inside(voice, music, seed)
            else:
                mixed = _mix(voice, music, float(name.split()[1]))
            mixed_path = scratch / "mixed.wav"
            sf.write(mixed_path, mixed, 16_000)
            _sox([str(mixed_path), *out])
        elif name == "noise only":
            colour = ["whitenoise", "pinknoise", "brownnoise"][seed % 3]
            _sox(["-n", *out[:-1], "-c", "1", str(target), "synth", "6", colour, "vol", "0.3"])
        else:
            raise ValueError(f"unknown held-out transform {name!r}")


HELD_OUT_TRANSFORMS = ("clean", "pitch +1", "pitch -1", "pitch +2", "pitch -2", "reverb (medium room)",
                       "reverb (large hall)", "tempo x1.1", "8 kHz band-limit", "ogg vorbis q0", "mp3 32 kbit/s",
                       "music 0 dB", "music 6 dB", "3 s in 10 s of music")


def schroeder_reverb(audio: np.ndarray, size: float, wet: float, damping: float = 0.3) -> np.ndarray:
    """Schroeder/Moorer reverberator: eight damped feedback combs in parallel, four all-passes in series
    (Freeverb's delay lengths scaled by `size`), mixed with the dry signal; 1.5 s of tail kept."""
    from scipy.signal import lfilter

    rate = 16_000
    dry = np.concatenate([audio.astype(np.float64), np.zeros(int(1.5 * rate))])
    damped = lfilter([1 - damping], [1, -damping], dry)
    wet_sum = np.zeros_like(dry)
    for delay in (1557, 1617, 1491, 1422, 1277, 1356, 1188, 1116):
        taps = int(delay * size) * rate // 44_100
        feedback = np.zeros(taps + 1)
        feedback[0], feedback[taps] = 1.0, -0.84
        wet_sum += lfilter([1.0], feedback, damped)
    for delay in (556, 441, 341, 225):
        taps = delay * rate // 44_100
        b, a = np.zeros(taps + 1), np.zeros(taps + 1)
        b[0], b[taps], a[0], a[taps] = -0.5, 1.0, 1.0, -0.5
        wet_sum = lfilter(b, a, wet_sum)
    mixed = (1 - wet) * dry + wet * wet_sum / max(1e-9, np.max(np.abs(wet_sum))) * np.max(np.abs(dry))
    return (mixed / np.max(np.abs(mixed)) * 0.9).astype(np.float32)


def fm_music(n_samples: int, seed: int) -> np.ndarray:
    """Music with no voice: FM-synth chords, a square-wave bass and noise-burst drums, seeded (16 kHz)."""
    rate = 16_000
    rng = np.random.default_rng(seed)
    music = np.zeros(n_samples)
    bar = int(rate * rng.uniform(1.0, 2.2))
    t = np.arange(bar) / rate
    for start in range(0, n_samples, bar):
        root = 110 * 2 ** (rng.integers(0, 12) / 12)
        segment = np.zeros(bar)
        for interval in (0, 4, 7, 12):
            freq = root * 2 * 2 ** (interval / 12)
            modulation = 2.0 * np.exp(-3 * t) * np.sin(2 * np.pi * 2 * freq * t)
            segment += np.sin(2 * np.pi * freq * t + modulation) * np.exp(-2 * t)
        segment += 1.5 * np.sign(np.sin(2 * np.pi * root / 2 * t))
        for beat in range(4):
            hit, length = beat * bar // 4, int(0.06 * rate)
            length = min(length, bar - hit)
            segment[hit:hit + length] += 2.5 * rng.standard_normal(length) * np.exp(-np.arange(length) / (0.015 * rate))
        end = min(n_samples, start + bar)
        music[start:end] += segment[: end - start]
    return (music / np.max(np.abs(music)) * 0.9).astype(np.float32)


def _voice_inside(voice: np.ndarray, music: np.ndarray, seed: int, snr_db: float = 3.0) -> np.ndarray:
    """The first 3 s of `voice` at a seeded offset inside `music`, `snr_db` over the music there (float64)."""
    rng = np.random.default_rng(seed)
    piece = voice[: 3 * 16_000]
    start = int(rng.integers(0, music.size - piece.size + 1))
    placed = np.zeros(music.size, dtype=np.float32)
    placed[start:start + piece.size] = piece
    gain = np.sqrt(np.mean(piece.astype(np.float64) ** 2)) / max(
        1e-9, np.sqrt(np.mean(music[start:start + piece.size].astype(np.float64) ** 2))) * 10 ** (-snr_db / 20)
    mixed = placed + music * gain
    return mixed / max(1.0, np.max(np.abs(mixed)) / 0.9)


# Tuning only: implementations that neither the pipeline (enrolment, calibration) nor the held-out part use.
THIRD_FAMILY = {
    "schroeder reverb, small": lambda audio, seed: schroeder_reverb(audio, 0.8, 0.5),
    "schroeder reverb, large": lambda audio, seed: schroeder_reverb(audio, 1.4, 0.8, 0.2),
    "fm music 0 dB": lambda audio, seed: _mix(audio, fm_music(audio.size, seed), 0.0),
    "fm music 6 dB": lambda audio, seed: _mix(audio, fm_music(audio.size, seed), 6.0),
    "3 s in 10 s of fm music": lambda audio, seed: _voice_inside(audio, fm_music(10 * 16_000, seed + 1),
                                                                 seed).astype(np.float32),
}


def fdn_reverb(audio: np.ndarray, rt60_s: float, wet: float, seed: int) -> np.ndarray:
    """A feedback delay network hall: eight delay lines of seeded lengths (44-160 ms) mixed by a Householder
    matrix, each line's gain set for `rt60_s`, a one-pole air-absorption low-pass on the tail, mixed with the
    dry signal; the tail is kept. Computed a block at a time: a block no longer than the shortest delay reads
    only what earlier blocks wrote."""
    from scipy.signal import lfilter

    rate = 16_000
    rng = np.random.default_rng(seed)
    dry = np.concatenate([audio.astype(np.float64), np.zeros(int(rt60_s * rate))])
    delays = np.sort(rng.integers(700, 2600, size=8))
    gains = 10 ** (-3 * delays / (rt60_s * rate))
    mixing = np.eye(8) - 2 / 8 * np.ones((8, 8))
    into, out_signs = rng.choice([-1.0, 1.0], size=8), rng.choice([-1.0, 1.0], size=8)
    pad = int(delays.max())
    lines = np.zeros((8, pad + dry.size))  # what enters each delay line, after `pad` samples of silence
    tail = np.zeros(dry.size)
    block = int(delays.min())
    for start in range(0, dry.size, block):
        end = min(dry.size, start + block)
        taps = np.stack([lines[i, pad + start - d: pad + end - d] for i, d in enumerate(delays)])  # (8, block)
        taps *= gains[:, None]
        tail[start:end] = out_signs @ taps
        lines[:, pad + start: pad + end] = mixing @ taps + into[:, None] * dry[None, start:end]
    tail = lfilter([0.35], [1.0, -0.65], tail)
    mixed = (1 - wet) * dry + wet * tail / max(1e-9, np.max(np.abs(tail))) * np.max(np.abs(dry))
    return (mixed / np.max(np.abs(mixed)) * 0.9).astype(np.float32)


# Tuning only, seeded apart from every other family: rooms as long and wet as the held-out part's (the
# Schroeder rooms above were too easy to tell anything apart: 0.97-1.00 with every design tried).
HARD_ROOMS = {
    "fdn hall, 1.2 s": lambda audio, seed: fdn_reverb(audio, 1.2, 0.6, seed),
    "fdn hall, 2 s, wet": lambda audio, seed: fdn_reverb(audio, 2.0, 0.85, seed),
}


# Tuning only, seeded apart: music played by sampled instruments (General MIDI scores rendered by FluidSynth:
# `pipeline.privacy.music`), from another sound font (csound's GM bank) and
# other instruments (with a lead line: brass, saxophone, clarinet) than held_out_tools' (FluidR3). Added when
# held_out_tools showed sampled instruments to be what the leak check misses most; "sampled music only" clips
# (no voice) show the other side: how often such music alone is taken for a reference voice.
TUNING_SOUND_FONT = Path("/usr/share/sounds/sf2/sf_GMbank.sf2")  # Debian csound-soundfont (make bench-deps)
TUNING_PALETTE = Palette(chords=(2, 7, 19, 27), bass=(33, 36), pad=(48, 91), lead=(57, 66, 71))


def sampled_music(n_samples: int, seed: int) -> np.ndarray:
    """`n_samples` (16 kHz) of a seeded score played from csound's GM bank."""
    return sampled_band(n_samples, seed, TUNING_PALETTE, TUNING_SOUND_FONT)


SAMPLED_FAMILY = {
    "sampled music 0 dB": lambda audio, seed: _mix(audio, sampled_music(audio.size, seed), 0.0),
    "sampled music 6 dB": lambda audio, seed: _mix(audio, sampled_music(audio.size, seed), 6.0),
    "3 s in 10 s of sampled music": lambda audio, seed: _voice_inside(audio, sampled_music(10 * 16_000, seed + 1),
                                                                      seed).astype(np.float32),
}


def tuning_transform(name: str, source: Path, target: Path, seed: int) -> None:
    """A tuning transformation: the pipeline's calibration conditions (numpy/scipy), the third family or the
    hard rooms, written at 44.1 kHz."""
    import librosa

    from pipeline.privacy.conditions import CALIBRATION_CONDITIONS, no_voice_clips

    if name in ("music only", "noise only"):
        audio = no_voice_clips(1, seed)[name][0]
    elif name == "sampled music only":
        audio = sampled_music(6 * 16_000, seed)
    elif name in THIRD_FAMILY or name in HARD_ROOMS or name in SAMPLED_FAMILY:
        audio = {**THIRD_FAMILY, **HARD_ROOMS, **SAMPLED_FAMILY}[name](_read(source), seed)
    else:
        audio = CALIBRATION_CONDITIONS[name](_read(source), seed)
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, librosa.resample(audio, orig_sr=16_000, target_sr=CLIP_RATE), CLIP_RATE, subtype="PCM_16")


# held_out_tools: the held-out voices under a fourth family of implementations, tools none of the other parts,
# the enrolment or the calibration use (rubberband, pyroomacoustics, FluidSynth with a General MIDI sound font,
# sox's GSM codec): `make bench-deps` installs them.
TOOLS_TRANSFORMS = ("clean", "pitch +1 (rubberband)", "pitch -1 (rubberband)", "pitch +2 (rubberband)",
                    "pitch -2 (rubberband)", "tempo x0.9 (rubberband)", "room, small (pyroomacoustics)",
                    "room, medium (pyroomacoustics)", "room, large (pyroomacoustics)", "gm music 0 dB",
                    "gm music 6 dB", "3 s in 10 s of gm music", "gsm 06.10")
SOUND_FONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")  # Debian fluid-soundfont-gm
HELD_OUT_PALETTE = Palette(chords=(0, 4, 24, 25), bass=(32, 33, 34), pad=(48, 49, 89))  # no lead line
# (room size ranges in metres, target RT60 in seconds) per room
TOOL_ROOMS = {"small": ((4.0, 5.5), (3.0, 4.5), (2.5, 3.0), 0.3),
              "medium": ((8.0, 11.0), (6.0, 8.0), (3.0, 4.0), 0.6),
              "large": ((18.0, 25.0), (12.0, 18.0), (6.0, 9.0), 1.0)}


def gm_music(seconds: float, seed: int) -> np.ndarray:
    """Music with no voice, rendered by FluidSynth with the FluidR3 sound font from a seeded General MIDI score
    (`pipeline.privacy.music.score`): a chord instrument (piano, electric piano or guitar), a bass, a string or
    synth pad and a drum kit, 90-130 bpm (16 kHz mono)."""
    return render(*score(seconds, seed, HELD_OUT_PALETTE), SOUND_FONT, seconds)


def pyroom(audio: np.ndarray, room: str, seed: int) -> np.ndarray:
    """`audio` (16 kHz) played in a seeded shoebox room by pyroomacoustics' image-source method (reflections up
    to the order Sabine's formula asks for the target RT60, at most 60), heard by one microphone 1-4 m away; the
    tail is kept. (Its ray tracer is not used: it draws from a generator nothing here can seed, so two builds
    of the part differed.)"""
    import pyroomacoustics as pra

    rng = np.random.default_rng(seed)
    *ranges, rt60 = TOOL_ROOMS[room]
    size = [float(rng.uniform(*extent)) for extent in ranges]
    absorption, max_order = pra.inverse_sabine(rt60, size)
    simulated = pra.ShoeBox(size, fs=16_000, materials=pra.Material(absorption), max_order=min(max_order, 60),
                            air_absorption=True)
    while True:  # a talker and a microphone 0.5 m or more from every wall, 1-4 m apart
        source = [float(rng.uniform(0.5, extent - 0.5)) for extent in size[:2]] + [float(rng.uniform(1.4, 1.8))]
        microphone = [float(rng.uniform(0.5, extent - 0.5)) for extent in size[:2]] + [float(rng.uniform(0.8, 1.6))]
        if 1.0 <= np.linalg.norm(np.subtract(source, microphone)) <= 4.0:
            break
    simulated.add_source(source, signal=audio.astype(np.float64))
    simulated.add_microphone(microphone)
    simulated.simulate()
    wet = simulated.mic_array.signals[0]
    return (wet / max(1e-9, np.max(np.abs(wet))) * 0.9).astype(np.float32)


def _rubberband(source: Path, args: list[str]) -> np.ndarray:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "out.wav"
        subprocess.run(["rubberband", "-q", *args, str(source), str(out)], check=True, capture_output=True)
        return _read(out)


def tools_transform(name: str, source: Path, target: Path, seed: int) -> None:
    """A held_out_tools transformation of `source` (16 kHz wav) into `target` (44.1 kHz wav)."""
    import librosa

    if name == "clean":
        audio = _read(source)
    elif name.startswith("pitch"):
        audio = _rubberband(source, ["-p", name.split()[1]])
    elif name.startswith("tempo"):
        audio = _rubberband(source, ["-T", "0.9"])
    elif name.startswith("room"):
        audio = pyroom(_read(source), name.split(",")[1].split()[0], seed)
    elif name in ("gm music 0 dB", "gm music 6 dB"):
        voice = _read(source)
        audio = _mix(voice, gm_music(voice.size / 16_000, seed), float(name.split()[2]))
    elif name == "3 s in 10 s of gm music":
        audio = _voice_inside(_read(source), gm_music(10.0, seed), seed).astype(np.float32)
    elif name == "music only":
        audio = gm_music(6.0, seed)
    elif name == "noise only":
        rng = np.random.default_rng(seed)
        white = rng.standard_normal(6 * 16_000)
        spectrum = np.fft.rfft(white) / np.maximum(1.0, np.arange(white.size // 2 + 1)) ** (0.5 * (seed % 3))
        noise = np.fft.irfft(spectrum, n=white.size)  # white, pink or brown
        audio = (noise / np.max(np.abs(noise)) * 0.3).astype(np.float32)
    elif name == "gsm 06.10":
        with tempfile.TemporaryDirectory() as scratch:
            coded, back = Path(scratch) / "coded.gsm", Path(scratch) / "back.wav"
            _sox([str(source), "-r", "8000", "-c", "1", str(coded)])
            _sox([str(coded), "-r", "16000", "-b", "16", str(back)])
            audio = _read(back)
    else:
        raise ValueError(f"unknown held_out_tools transform {name!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    sf.write(target, librosa.resample(audio, orig_sr=16_000, target_sr=CLIP_RATE), CLIP_RATE, subtype="PCM_16")


def build(out_dir: Path, part: str) -> Path:
    """Write one part of the benchmark (see the module docstring); returns its folder."""
    from pipeline.privacy.conditions import CALIBRATION_CONDITIONS
    from pipeline.privacy.test_voices import espeak_data

    split = load_split()
    spec = split[part]
    counts = {**split["utterances"], **spec.get("utterances", {})}  # a part may have more impostors, fewer each
    root = out_dir / part
    made = espeak_data(spec["variants"], root / "_espeak-ng") if spec.get("variants") else None
    rows = []
    if part == "held_out_tools":
        transforms, transform = TOOLS_TRANSFORMS, tools_transform
    elif part.startswith("held_out"):
        transforms, transform = HELD_OUT_TRANSFORMS, sox_transform
    else:
        transforms, transform = (*CALIBRATION_CONDITIONS, *THIRD_FAMILY, *HARD_ROOMS, *SAMPLED_FAMILY), tuning_transform
    raw = root / "_voices"
    seed = third = hard = sampled = 0
    for group in ("reference", "another_synthesiser", "impostors"):
        for speaker, (engine, voice) in spec[group].items():
            rng = random.Random(f"{part}-{speaker}")
            texts = rng.sample(SENTENCES, counts["reference"] + counts["probes"])
            if group == "reference":
                for i, text in enumerate(texts[: counts["reference"]]):
                    path = root / "reference" / speaker / f"{i:02d}.wav"
                    if not path.is_file():
                        synthesise(engine, voice, text, path, made)
                probes = texts[counts["reference"]:]
            elif group == "another_synthesiser":
                probes = texts[counts["reference"]:]
            else:
                probes = random.Random(f"{part}-{speaker}-imp").sample(SENTENCES, counts["impostor"])
            kind = "other_voice" if group == "impostors" else "leak"
            for i, text in enumerate(probes):
                source = raw / group / speaker / f"{i:02d}.wav"
                if not source.is_file():
                    synthesise(engine, voice, text, source, made)
                for name in transforms:
                    label = name if group != "another_synthesiser" else f"another synthesiser, {name}"
                    if group == "another_synthesiser" and name not in ("clean", "8 kHz band-limit", "telephone",
                                                                       "music 0 dB"):
                        continue
                    if name in THIRD_FAMILY:  # seeded apart, so adding it left the other clips' seeds as they were
                        third += 1
                        clip_seed = 50_000 + third
                    elif name in HARD_ROOMS:  # likewise
                        hard += 1
                        clip_seed = 70_000 + hard
                    elif name in SAMPLED_FAMILY:  # likewise
                        sampled += 1
                        clip_seed = 90_000 + sampled
                    else:
                        seed += 1
                        clip_seed = seed
                    target = root / "clips" / kind / _slug(label) / f"{speaker}-{i:02d}.wav"
                    if not target.is_file():
                        transform(name, source, target, clip_seed)
                    rows.append((str(target.relative_to(root)), kind, label, speaker))
    no_voice = ("music only", "noise only") + (("sampled music only",) if transform is tuning_transform else ())
    for name in no_voice:
        for i in range(36):
            seed += 1
            target = root / "clips" / "no_voice" / _slug(name) / f"{i:02d}.wav"
            if not target.is_file():
                transform(name, target, target, (20_000 if name == "sampled music only" else 10_000) + i)
            rows.append((str(target.relative_to(root)), "no_voice", name, ""))
    with open(root / "clips.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "kind", "transform", "speaker"])
        writer.writerows(rows)
    return root


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "+-" else "_" for c in name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--part", choices=split_parts(), required=True)
    args = parser.parse_args()
    print(build(args.out_dir, args.part))


if __name__ == "__main__":
    main()
