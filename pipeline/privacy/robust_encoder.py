"""GE2E taught to hear a voice through music and rooms: resemblyzer's encoder, fine-tuned by self-distillation.

resemblyzer's GE2E embeds a voice under accompaniment or in a room far from where it embeds the same voice clean (a
1.6 s partial under sampled instruments at 0 dB: cosine 0.58 to its clean self, on the cohort voices below), and no
score or backend on top of the embedding undid that (benchmarks/PRIVACY.md: every design traded leaks caught for
impostors flagged along one line). Here the encoder itself learns it. Teacher: the shipped GE2E, frozen. Student: a
copy of it, trained so that, partial by partial,

    student(voice under a transformation) ~ teacher(the same voice clean)   and   student(clean) ~ teacher(clean)

(loss: one minus each cosine, averaged). The second term keeps clean embeddings, and so everything GE2E learned about
telling voices apart, where they were; no speaker label is used. Architecture, mel front end and partial layout are
resemblyzer's own, so the student loads into `resemblyzer.VoiceEncoder(weights_fpath=...)` and costs what it did.

What it learns from never touches the privacy benchmark's held-out split (`benchmarks/privacy_split.json`):
- voices: the pipeline's impostor cohort (`cohort.COHORT_VOICES`: flite, festival lp and ph, English espeak-ng
  variants), `UTTERANCES_PER_VOICE` utterances each of seeded word strings drawn from the GPL-3 text every Debian
  system carries (by variant, the cohort's `en-us+f4` is near `held_out_espeak`'s impostor `cs+f4`;
  `held_out_espeak2` shares no variant with the cohort);
- transformations: implementations of our own that neither calibration (`conditions.py`) nor any benchmark part
  uses: TimGM6mb sampled instruments (`music.py`, rendered by FluidSynth as enrolment's are; `held_out_tools` renders
  other instruments, FluidR3's, with the same program) from other seeds and offsets than enrolment's, at -3..+9 dB, the
  arpeggio and plucked bands of `transforms.py` from other seeds, a four-band exponential-decay room (RT60 0.3-1.6 s
  per band, direct-to-reverberant ratio -6..+6 dB), that room under sampled music, white noise at 0-10 dB.

`python -m pipeline.privacy.robust_encoder --out DIR` trains it (about 10 minutes on 2 cores) and prints the
weights' sha256; `ROBUST_WEIGHTS` is the file it wrote with the defaults, shipped with the package. The run is
seeded and, at the same thread count, repeatable. `--extra-espeak` adds espeak-ng voices to learn from,
`--made-voices` espeak-ng variants made from seeds, and `--without-cohort` leaves the cohort's out: the notebook's
experiments with more training voices (none shipped).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.files import sha256_file

RATE = 16_000
PARTIAL_FRAMES = 160  # resemblyzer's partial: 1.6 s of 10 ms mel frames
PARTIAL_HOP = 80
UTTERANCES_PER_VOICE = 40
VARIANTS_PER_UTTERANCE = 3
EPOCHS = 3  # chosen on the privacy benchmark's tuning parts (benchmarks/PRIVACY.md, 2026-12-07)
LEARNING_RATE = 1e-4
BATCH = 64
WORDS = Path("/usr/share/common-licenses/GPL-3")  # Debian's base-files: on every machine this runs on
ANCHOR_PREFIX = "anchor_"  # a training voice learned from clean only: its pairs are (clean, clean)
ROBUST_WEIGHTS = Path(__file__).with_name("weights") / "ge2e-robust-v1.pt"
ROBUST_WEIGHTS_SHA256 = "cd0c95461af196f84165ece798948f258998c0c4b82814b7a5003978587f21cf"


def _vocabulary() -> list[str]:
    if not WORDS.is_file():
        from pipeline.errors import BadInput

        raise BadInput(f"{WORDS} (the word source of the training utterances) is missing: install Debian's base-files")
    return [word.lower() for word in re.findall(r"[A-Za-z]{3,}", WORDS.read_text())]


def synthesise_voices(folder: Path, extra_espeak: tuple[str, ...] = (), cohort: bool = True,
                      made: dict[str, tuple[str, str]] | None = None, leave_out: tuple[str, ...] = (),
                      anchors: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    """The training utterances, written once under `folder/audio/<voice>/NNN.wav`: every installed cohort voice
    (unless `cohort` is False) but those whose ids are in `leave_out`, each espeak-ng voice of `extra_espeak` (e.g.
    `en+Alicia`) and each made espeak-ng variant of `made` (name -> (English base voice, variant file text):
    `benchmarks/privacy_made_voices.py`) reading `UTTERANCES_PER_VOICE` seeded strings of 8-14 words; `anchors`, made
    variants like `made`'s, go under `anchor_<name>` (learned from clean only: `ANCHOR_PREFIX`). Returns these
    voices' files only, whatever else an earlier run left in the folder."""
    from functools import partial

    from pipeline.privacy.cohort import COHORT_VOICES, _available
    from pipeline.privacy.test_voices import _espeak, _festival, _flite, espeak_data, synthesise_files

    synths = {"flite": _flite, "festival": _festival, "espeak-ng": _espeak}
    every_made = {**(made or {}), **(anchors or {})}
    if every_made:
        data = espeak_data({name: text for name, (_, text) in every_made.items()}, folder / "espeak-ng")
        synths["made"] = partial(_espeak, data=data)
    vocabulary = _vocabulary()
    unknown = set(leave_out) - {voice_id for voice_id, *_ in COHORT_VOICES}
    if unknown:
        raise ValueError(f"cannot leave out {', '.join(sorted(unknown))}: not cohort voices; the cohort's ids: "
                         f"{', '.join(voice_id for voice_id, *_ in COHORT_VOICES)}")
    voices = [*((voice for voice in COHORT_VOICES if voice[0] not in leave_out) if cohort else ()),
              *((f"extra_{voice.replace('+', '_')}", "espeak-ng", voice) for voice in extra_espeak),
              *((f"made_{name}", "made", f"{base}+{name}") for name, (base, _) in (made or {}).items()),
              *((f"{ANCHOR_PREFIX}{name}", "made", f"{base}+{name}") for name, (base, _) in (anchors or {}).items())]
    jobs, paths = [], []
    for voice_id, engine, voice in voices:
        if engine != "made" and not _available(engine, voice):
            continue
        rng = random.Random("distill" + voice_id)
        for number in range(UTTERANCES_PER_VOICE):
            path = folder / "audio" / voice_id / f"{number:03d}.wav"
            text = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(8, 14))) + "."
            paths.append(path)
            if not path.is_file():
                jobs.append((synths[engine], voice, text, path))
    synthesise_files(jobs)
    return sorted(paths)


def band_room(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`audio` in a room of four bands (100-500-1,500-4,000-7,900 Hz), each an exponentially decaying noise tail of
    its own RT60 (0.3-1.6 s), after a direct path -6..+6 dB against the tail's energy. (samples,) float32 @ 16 kHz."""
    from scipy.signal import butter, fftconvolve, sosfilt

    n = int(1.8 * RATE)
    t = np.arange(n) / RATE
    tail = np.zeros(n)
    edges = [100, 500, 1500, 4000, 7900]
    for low, high in zip(edges[:-1], edges[1:]):
        rt60 = rng.uniform(0.3, 1.6)
        noise = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
        tail += sosfilt(butter(2, [low, high], btype="bandpass", fs=RATE, output="sos"), noise)
    tail[: int(0.003 * RATE)] = 0
    direct = 10 ** (rng.uniform(-6, 6) / 20)
    response = tail / np.sqrt(np.sum(tail ** 2))
    response[0] += direct
    wet = fftconvolve(audio.astype(np.float64), response)[: audio.size]
    return (wet / (np.max(np.abs(wet)) + 1e-9) * 0.9).astype(np.float32)


def _sampled_music(n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """`n_samples` of one of eight minutes of TimGM6mb music (seeds 100-107, not enrolment's), from a seeded offset."""
    from pipeline.privacy.transforms import _sampled_piece  # a minute per seed, rendered once per process

    piece = _sampled_piece(int(rng.integers(100, 108)))
    start = int(rng.integers(0, piece.size - n_samples)) if piece.size > n_samples else 0
    return np.resize(piece[start:], n_samples)


def transform(voice: np.ndarray, rng: np.random.Generator) -> tuple[str, np.ndarray]:
    """One seeded training transformation of a voiced signal, its length kept (so partials stay aligned)."""
    from pipeline.privacy.transforms import arpeggio_band, mix_at_snr, plucked_band

    kind = rng.integers(0, 8)
    if kind == 0:
        return "sampled music ~0 dB", mix_at_snr(voice, _sampled_music(voice.size, rng), rng.uniform(-3, 3))
    if kind == 1:
        return "sampled music ~6 dB", mix_at_snr(voice, _sampled_music(voice.size, rng), rng.uniform(4, 9))
    if kind == 2:
        return "arpeggios", mix_at_snr(voice, arpeggio_band(voice.size, int(rng.integers(1000, 2000))),
                                       rng.uniform(-2, 6))
    if kind == 3:
        return "plucked strings", mix_at_snr(voice, plucked_band(voice.size, int(rng.integers(1000, 2000))),
                                             rng.uniform(-2, 6))
    if kind in (4, 5):
        return "room", band_room(voice, rng)
    if kind == 6:
        return "room under music", mix_at_snr(band_room(voice, rng), _sampled_music(voice.size, rng),
                                              rng.uniform(3, 9))
    return "white noise", mix_at_snr(voice, rng.standard_normal(voice.size).astype(np.float32), rng.uniform(0, 10))


def partial_pairs(files: list[Path], variants: int = VARIANTS_PER_UTTERANCE) -> tuple[np.ndarray, np.ndarray, list]:
    """Aligned mel partials of every file's voiced part, clean and under `variants` seeded transformations:
    (clean (n, 160, 40), transformed (n, 160, 40), the transformation of each pair). An anchor voice's file (its folder
    named `ANCHOR_PREFIX`...) gives each clean partial once, paired with itself: the loss only holds it where the
    teacher has it."""
    import soundfile as sf
    from resemblyzer import preprocess_wav
    from resemblyzer.audio import normalize_volume, wav_to_mel_spectrogram

    # a file's transformations are seeded by its place among the files that are not anchors, so anchors added to a
    # training set leave every other file's draws as they were
    seeds = {path: number for number, path in enumerate(
        one for one in files if not one.parent.name.startswith(ANCHOR_PREFIX))}
    clean, transformed, kinds = [], [], []
    for path in files:
        audio, rate = sf.read(path, dtype="float32")
        voice = preprocess_wav(audio, source_sr=rate)  # (samples,) @ 16 kHz, trimmed and volume-normalised
        if voice.size < 1.7 * RATE:
            continue
        clean_mel = wav_to_mel_spectrogram(voice)  # (frames, 40)
        if path in seeds:
            rng = np.random.default_rng(seeds[path])
            draws = (transform(voice, rng) for _ in range(variants))
            heard_mels = ((kind, wav_to_mel_spectrogram(normalize_volume(heard, -30, increase_only=True)
                                                        .astype(np.float32))) for kind, heard in draws)
        else:  # an anchor: its clean partials, once, as both halves
            heard_mels = [("clean (anchor)", clean_mel)]
        for kind, heard_mel in heard_mels:
            for start in range(0, min(len(clean_mel), len(heard_mel)) - PARTIAL_FRAMES + 1, PARTIAL_HOP):
                clean.append(clean_mel[start:start + PARTIAL_FRAMES])
                transformed.append(heard_mel[start:start + PARTIAL_FRAMES])
                kinds.append(kind)
    return np.array(clean, np.float32), np.array(transformed, np.float32), kinds


def relational_loss(student_heard, teacher_clean):
    """Mean squared difference, over a batch's pairs of partials, between the cosine of the student's embeddings of
    the transformed partials and the cosine of the teacher's clean ones: voices kept as far apart under a
    transformation as they are clean. Both (batch, dim), unit rows."""
    import torch

    pairs = torch.triu_indices(len(student_heard), len(student_heard), offset=1)
    heard = (student_heard @ student_heard.T)[pairs[0], pairs[1]]
    clean = (teacher_clean @ teacher_clean.T)[pairs[0], pairs[1]]
    return ((heard - clean) ** 2).mean()


def distill(clean: np.ndarray, transformed: np.ndarray, epochs: int = EPOCHS, learning_rate: float = LEARNING_RATE,
            batch: int = BATCH, log=print, after_epoch=None, relational: float = 0.0):
    """The student after `epochs` passes over the pairs (seeded order), starting from resemblyzer's weights;
    `after_epoch(epoch, student)` is called after each pass. `relational` > 0 adds that weight of
    `relational_loss` (an experiment, benchmarks/PRIVACY.md 2026-12-07 late; the shipped weights use none)."""
    import torch
    from resemblyzer import VoiceEncoder

    torch.manual_seed(0)
    teacher = VoiceEncoder("cpu", verbose=False).eval()
    student = VoiceEncoder("cpu", verbose=False)
    with torch.no_grad():  # (n, 256): where each partial's clean self lies
        target = torch.cat([teacher(torch.from_numpy(clean[i:i + 256])) for i in range(0, len(clean), 256)])
    optimiser = torch.optim.Adam(student.parameters(), lr=learning_rate)
    for epoch in range(epochs):
        order = np.random.default_rng(epoch).permutation(len(clean))
        total = 0.0
        for start in range(0, len(clean), batch):
            chosen = order[start:start + batch]
            wanted = target[chosen]
            heard = student(torch.from_numpy(transformed[chosen]))
            loss = ((1 - (heard * wanted).sum(1)).mean()
                    + (1 - (student(torch.from_numpy(clean[chosen])) * wanted).sum(1)).mean())
            if relational:
                loss = loss + relational * relational_loss(heard, wanted)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * len(chosen)
        log(f"epoch {epoch}: loss {total / len(clean):.5f}")
        if after_epoch is not None:
            after_epoch(epoch, student)
    return student


def _made_voices(path: Path | None) -> dict[str, tuple[str, str]] | None:
    """The "picked" voices of a `benchmarks/privacy_made_voices.py --json` file: name -> (base voice, variant text)."""
    if path is None:
        return None
    import json

    picked = json.loads(path.read_text())["picked"]
    return {name: (voice["base"], voice["variant"]) for name, voice in picked.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.privacy.robust_encoder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="training audio, pairs and the weights go here")
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--relational", type=float, default=0.0,
                        help="weight of the relational term (keeps voices apart under transformations); "
                             "the shipped weights use 0")
    parser.add_argument("--extra-espeak", default="", metavar="VOICE,...",
                        help="espeak-ng voices to learn from beside the cohort's, comma-separated (e.g. "
                             "en+Alicia,en+Andrea); the shipped weights use none (benchmarks/PRIVACY.md, seventh "
                             "session: more voices, not kept)")
    parser.add_argument("--made-voices", type=Path, metavar="JSON",
                        help="made espeak-ng variants to learn from beside the cohort's: the \"picked\" voices of "
                             "`benchmarks/privacy_made_voices.py --json` (name -> base and variant text)")
    parser.add_argument("--without-cohort", action="store_true",
                        help="learn from the --extra-espeak and --made-voices voices only, so that calibration's "
                             "impostors (the cohort) are voices the encoder never heard")
    parser.add_argument("--anchor-made-voices", type=Path, metavar="JSON",
                        help="made espeak-ng variants (as --made-voices) learned from clean only, to hold their region "
                             "of the embedding where the teacher has it; the shipped weights use none")
    parser.add_argument("--leave-out", default="", metavar="VOICE_ID,...",
                        help="cohort voices (cohort.COHORT_VOICES ids, e.g. flite_slt) not to learn from, so that a "
                             "benchmark part's voices are ones the encoder never heard; the shipped weights leave "
                             "out none")
    args = parser.parse_args(argv)
    leave_out = tuple(voice for voice in args.leave_out.split(",") if voice)
    extra = tuple(voice for voice in args.extra_espeak.split(",") if voice)
    made, anchors = _made_voices(args.made_voices), _made_voices(args.anchor_made_voices)
    if args.without_cohort and not extra and not made:
        parser.error("--without-cohort needs --extra-espeak or --made-voices voices to learn from")
    import torch

    started = time.time()
    try:
        files = synthesise_voices(args.out, extra, cohort=not args.without_cohort, made=made, leave_out=leave_out,
                                  anchors=anchors)
    except ValueError as exc:
        parser.error(str(exc))
    clean, transformed, _ = partial_pairs(files)
    print(f"{len(files)} utterances, {len(clean)} partial pairs ({time.time() - started:.0f} s)", flush=True)

    def keep_earlier_epoch(epoch: int, model) -> None:  # the last epoch is the weights file below
        if epoch + 1 < args.epochs:
            torch.save({"model_state": model.state_dict()}, args.out / f"epoch-{epoch + 1}.pt")

    student = distill(clean, transformed, args.epochs,
                      log=lambda line: print(f"{line} ({time.time() - started:.0f} s)", flush=True),
                      after_epoch=keep_earlier_epoch, relational=args.relational)
    weights = args.out / ROBUST_WEIGHTS.name
    torch.save({"model_state": student.state_dict()}, weights)
    print(f"{weights}: sha256 {sha256_file(weights)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
