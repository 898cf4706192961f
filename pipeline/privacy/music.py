"""Music played by sampled instruments: seeded General MIDI scores rendered by FluidSynth from a sound font.

Synthetic accompaniment (tones, sawtooth arpeggios, plucked strings) is easy for the leak check to see
through; recorded instruments are not. The privacy benchmark's `held_out_tools` part showed it: voices under
FluidSynth renderings of the FluidR3 sound font were caught 0.40 of the time at 0 dB, where the same voices
under sox-synthesised music were caught 0.81. So enrolment also hears every reference utterance under the
leak check's own scores (`score`, `ENROLMENT_PALETTE`) played with the TimGM6mb sound font (`SOUND_FONT`;
Debian's timgm6mb-soundfont, installed by `make deps`: `transforms.ENROLMENT_VARIANTS`), a font that neither
the benchmark's tuning parts (csound's GM bank) nor its held-out part (FluidR3) play; the benchmark renders
its music with the same code.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SOUND_FONT = Path("/usr/share/sounds/sf2/TimGM6mb.sf2")
RATE = 16_000  # the speaker encoder's rate


@dataclass(frozen=True)
class Palette:
    """General MIDI programs a score draws its instruments from (one of each per score)."""

    chords: tuple[int, ...]
    bass: tuple[int, ...]
    pad: tuple[int, ...]
    lead: tuple[int, ...] = ()  # empty: no lead line


# The pipeline's own music: pianos, organ, guitar; electric and synth basses; strings and brass; a saxophone,
# trumpet or flute line (the instruments whose range and timbre sit closest to a voice).
ENROLMENT_PALETTE = Palette(chords=(1, 5, 16, 26), bass=(35, 38), pad=(50, 61), lead=(65, 56, 73))


def midi_file(events: list[tuple[int, bytes]], ticks_per_beat: int, tempo_us: int) -> bytes:
    """A type-0 standard MIDI file of (tick, message) events, at `tempo_us` microseconds per beat."""

    def vlq(value: int) -> bytes:
        out = [value & 0x7F]
        value >>= 7
        while value:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        return bytes(reversed(out))

    track, last = vlq(0) + b"\xff\x51\x03" + tempo_us.to_bytes(3, "big"), 0
    for tick, message in sorted(events, key=lambda event: event[0]):
        track += vlq(tick - last) + message
        last = tick
    track += vlq(0) + b"\xff\x2f\x00"
    return b"MThd" + struct.pack(">IHHH", 6, 0, 1, ticks_per_beat) + b"MTrk" + struct.pack(">I", len(track)) + track


def score(seconds: float, seed: int, palette: Palette, ticks_per_beat: int = 480) -> tuple[list, int]:
    """A seeded pop score lasting at least `seconds`: (events, beats per minute). A four-chord progression in a
    random key at 90-130 bpm; the chord instrument on every beat, a pad held over each bar, the bass on beats
    one and three, a drum kit (kick, snare, eighth-note hi-hat) and, if the palette has one, a lead line of
    chord tones and passing notes."""
    rng = random.Random(seed)
    beat, bpm = ticks_per_beat, rng.randint(90, 130)
    key = rng.randint(45, 56)
    progression = rng.choice([(0, 5, 7, 3), (0, 7, 9, 5), (0, 3, 5, 7), (9, 5, 0, 7)])
    events: list[tuple[int, bytes]] = [(0, bytes([0xC0, rng.choice(palette.chords)])),
                                       (0, bytes([0xC1, rng.choice(palette.bass)])),
                                       (0, bytes([0xC2, rng.choice(palette.pad)]))]
    if palette.lead:
        events.append((0, bytes([0xC3, rng.choice(palette.lead)])))

    def note(tick: int, length: int, channel: int, pitch: int, velocity: int) -> None:
        events.append((tick, bytes([0x90 | channel, pitch, velocity])))
        events.append((tick + length, bytes([0x80 | channel, pitch, 0])))

    for bar in range(int(np.ceil(seconds * bpm / 60 / 4)) + 1):
        root = key + progression[bar % 4]
        third = 3 if progression[bar % 4] in (9, 2, 4) else 4
        start = bar * 4 * beat
        for tone in (0, third, 7):
            note(start, 4 * beat - 20, 2, root + 12 + tone, 50)  # pad
        for step in range(4):
            for tone in (0, third, 7, 12):
                note(start + step * beat, beat - 60, 0, root + 12 + tone, rng.randint(60, 85))
            note(start + step * beat, beat - 40, 9, 36 if step % 2 == 0 else 38, 100)  # kick / snare
            for half in range(2):
                note(start + step * beat + half * beat // 2, 60, 9, 42, rng.randint(50, 80))  # closed hi-hat
        note(start, 2 * beat - 30, 1, root - 12, 95)
        note(start + 2 * beat, 2 * beat - 30, 1, root - 12 + 7, 90)
        if palette.lead:
            for step in range(8):
                if rng.random() < 0.75:
                    pitch = root + 24 + rng.choice((0, 2, third, 5, 7, 9, 12))
                    note(start + step * beat // 2, beat // 2 - 20, 3, pitch, rng.randint(70, 100))
    return events, bpm


def require_fluidsynth(sound_font: Path = SOUND_FONT) -> None:
    """Raise BadInput, saying what to install, unless FluidSynth and `sound_font` are on this machine (checked once,
    before any file is embedded, so a missing tool is not reported as every reference file being unusable)."""
    if shutil.which("fluidsynth") is None or not Path(sound_font).is_file():
        from pipeline.errors import BadInput

        hint = ("`apt-get install fluidsynth timgm6mb-soundfont` (make deps)" if Path(sound_font) == SOUND_FONT
                else "the privacy benchmark's tools: make bench-deps")
        raise BadInput(f"sampled music needs FluidSynth and the sound font {sound_font}: install {hint}")


def render(events: list, bpm: int, sound_font: Path, seconds: float, ticks_per_beat: int = 480) -> np.ndarray:
    """The score played by FluidSynth from `sound_font`: (seconds * 16 kHz,) float32 mono, peak 0.9."""
    require_fluidsynth(sound_font)
    import soundfile as sf

    with tempfile.TemporaryDirectory() as scratch:
        midi, wav = Path(scratch) / "score.mid", Path(scratch) / "music.wav"
        midi.write_bytes(midi_file(events, ticks_per_beat, int(60e6 / bpm)))
        subprocess.run(["fluidsynth", "-ni", "-g", "0.7", "-F", str(wav), "-r", str(RATE), "-T", "wav",
                        str(sound_font), str(midi)], check=True, capture_output=True)
        audio, rate = sf.read(wav, dtype="float32", always_2d=True)
    if rate != RATE:
        raise RuntimeError(f"FluidSynth wrote {rate} Hz, asked for {RATE}")
    music = audio.mean(axis=1)[: int(seconds * RATE)]
    music = np.pad(music, (0, max(0, int(seconds * RATE) - music.size)))
    return (music / max(1e-9, float(np.max(np.abs(music)))) * 0.9).astype(np.float32)


def sampled_band(n_samples: int, seed: int, palette: Palette = ENROLMENT_PALETTE,
                 sound_font: Path = SOUND_FONT) -> np.ndarray:
    """`n_samples` (16 kHz) of a seeded score played by sampled instruments."""
    seconds = n_samples / RATE
    events, bpm = score(seconds, seed, palette)
    return render(events, bpm, sound_font, seconds)[:n_samples]
