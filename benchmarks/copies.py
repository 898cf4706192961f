"""Copy-check measurements (run on demand): how many copies of training recordings the copy check catches, and how
many new recordings it takes for copies, on a frozen held-out split of voices and tools.

    python benchmarks/copies.py OUT_DIR [--part held_out|tuning] [--ratio R]

The part's voices each read `utterances.corpus` Harvard sentences: that is the corpus, split into training and
held-out recordings exactly as a build splits it (`training.corpus.split`, `holdout_fraction`), and the copy
check's baseline is built from it exactly as the copy gate builds it (`copycheck.build_baseline`, at the config's
`privacy.copy_ratio` unless `--ratio` is given). Then, at 44.1 kHz:
- copies: every training recording through each of the part's tools (`benchmarks/copies_split.json`), judged
  one by one; printed: the share caught (DCR under the threshold), with a Wilson 95% interval;
- new recordings: the same voices reading `utterances.new` sentences the corpus does not hold, as they are and
  through each tool (a new recording moved in pitch is still new); printed: the share taken for copies. The held-out
  parts also hold the split's `false_copies`: their voices reading more sentences no corpus holds, and the other
  held-out part's voices reading this part's corpus sentences in order (the same words from other people).
`held_out` (the reported figure: voices and tools the copy check was never tuned on) is the default; `tuning` is
where its measure (the smoothing `copycheck.BLUR`, the window, the stretch) was chosen. `held_out_2` (other voices,
other tools) was frozen after the first held-out figure had shown a flaw, before the change that answers it, and
judges that change; `held_out_3` (four more voices) was frozen likewise when the grown non-copies showed that a
voice with no recording in the corpus's held-out part is outside the yardstick. Audio is synthesised once under
OUT_DIR/<part>/ and reused; every tool is seeded or deterministic (sox -R), so a figure repeats exactly.
The render step of a model (its VQ-VAE renditions) is not part of this measure: it tests the distance alone.
Then the near-copy detector (Chromaprint fingerprints, `privacy/fingerprint.py`) on the same voices' recordings
joined three at a time (it needs about 4.6 s of audio): corpus recordings through each tool caught, recordings that
are not copies taken for copies (its MAX_BER was chosen on the test voices, the tuning part's).
Needs `rubberband` (Debian `rubberband-cli`) for the held-out parts, besides what `make deps` installs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
SPLIT_FILE = REPO / "benchmarks" / "copies_split.json"
RATE = 44_100


def _run(tool: list[str], audio: np.ndarray, scratch: Path, suffix: str = ".wav") -> np.ndarray:
    """`tool` (its arguments with IN and OUT placeholders) on `audio`; the result as mono float32 @ 44.1 kHz."""
    source, result = scratch / "in.wav", scratch / f"out{suffix}"
    sf.write(source, audio, RATE, subtype="FLOAT")
    subprocess.run([str(source) if a == "IN" else str(result) if a == "OUT" else a for a in tool], check=True,
                   capture_output=True)
    if suffix != ".wav":  # a codec: decode it back with sox
        decoded = scratch / "decoded.wav"
        subprocess.run(["sox", "-R", str(result), "-e", "floating-point", str(decoded)], check=True,
                       capture_output=True)
        result = decoded
    out, rate = sf.read(result, dtype="float32", always_2d=True)
    assert rate == RATE, (tool, rate)
    return out.mean(axis=1)


def _pink(n: int, seed: int) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum[1:] /= np.sqrt(np.arange(1, spectrum.size))
    return np.fft.irfft(spectrum, n)


def _under_noise(audio: np.ndarray, seed: int) -> np.ndarray:
    quiet = audio * 10 ** (-12 / 20)
    noise = _pink(audio.size, seed)
    noise *= np.sqrt(np.mean(quiet.astype(np.float64) ** 2) / np.mean(noise ** 2)) * 10 ** (-25 / 20)
    return (quiet + noise).astype(np.float32)


def tools(part: str, scratch: Path, other_speech: np.ndarray) -> dict[str, Callable[[np.ndarray, int], np.ndarray]]:
    """name -> tool(audio, seed) for the part's tools (the split's list, in its order)."""
    import librosa

    sox = lambda *effect: (lambda audio, seed: _run(["sox", "-R", "IN", "OUT", *effect], audio, scratch))  # noqa: E731
    rubberband = lambda *option: (  # noqa: E731
        lambda audio, seed: _run(["rubberband", "-q", *option, "IN", "OUT"], audio, scratch))

    def inside_new_speech(seconds: int) -> Callable[[np.ndarray, int], np.ndarray]:
        def splice(audio: np.ndarray, seed: int) -> np.ndarray:
            rng = np.random.default_rng(seed)
            start = int(rng.integers(0, max(1, audio.size - seconds * RATE)))
            middle = audio[start:start + seconds * RATE]
            cut = int(rng.integers(RATE // 2, RATE))
            return np.concatenate([other_speech[:cut], middle, other_speech[cut:cut + RATE]]).astype(np.float32)
        return splice

    def white_noise(audio: np.ndarray, seed: int) -> np.ndarray:
        noise = np.random.default_rng(seed).standard_normal(audio.size)
        noise *= np.sqrt(np.mean(audio.astype(np.float64) ** 2)) * 10 ** (-20 / 20)
        return (audio + noise).astype(np.float32)

    every = {
        "exact": lambda audio, seed: audio,
        "sox tempo x0.95": sox("tempo", "0.95"),
        "sox tempo x1.05": sox("tempo", "1.05"),
        "sox pitch +50 cents": sox("pitch", "50"),
        "sox pitch -100 cents": sox("pitch", "-100"),
        "phase vocoder pitch +0.5 semitone": lambda audio, seed: librosa.effects.pitch_shift(audio, sr=RATE,
                                                                                             n_steps=0.5),
        "phase vocoder pitch -1 semitone": lambda audio, seed: librosa.effects.pitch_shift(audio, sr=RATE,
                                                                                           n_steps=-1.0),
        "phase vocoder stretch x1.05": lambda audio, seed: librosa.effects.time_stretch(audio, rate=1 / 1.05),
        "rubberband time x0.95": rubberband("--time", "0.95"),
        "rubberband time x1.05": rubberband("--time", "1.05"),
        "rubberband pitch +0.5 semitone": rubberband("--pitch", "0.5"),
        "rubberband pitch -1 semitone": rubberband("--pitch", "-1"),
        "sox speed x1.03 (tape)": sox("speed", "1.03", "rate", "-v", str(RATE)),
        "mp3 64 kbit/s": lambda audio, seed: _run(["sox", "-R", "IN", "-C", "64", "OUT"], audio, scratch, ".mp3"),
        "12 dB quieter under pink noise at 25 dB SNR": _under_noise,
        "2 s of it inside new speech": inside_new_speech(2),
        "rubberband time x0.97, formants kept": rubberband("-F", "--time", "0.97"),
        "rubberband pitch +1 semitone, formants kept": rubberband("-F", "--pitch", "1"),
        "sox speed x0.97 (tape)": sox("speed", "0.97", "rate", "-v", str(RATE)),
        "ogg vorbis q2": lambda audio, seed: _run(["sox", "-R", "IN", "-C", "2", "OUT"], audio, scratch, ".ogg"),
        "white noise at 20 dB SNR": white_noise,
        "3 s of it inside new speech": inside_new_speech(3),
    }
    names = load_split()[part]["tools"]
    if any(name.startswith("rubberband") for name in names) and shutil.which("rubberband") is None:
        raise SystemExit(f"part {part!r} needs the rubberband command line tool: apt-get install rubberband-cli")
    unknown = [n for n in names if n not in every]
    if unknown:
        raise SystemExit(f"{SPLIT_FILE}: unknown tool(s) {unknown}; known: {sorted(every)}")
    return {name: every[name] for name in names}


def load_split() -> dict:
    return json.loads(SPLIT_FILE.read_text())


# Harvard sentences (IEEE 1969, lists 3 and 4; public domain) that neither the corpus nor the new recordings read.
MORE_SENTENCES = (
    "The small pup gnawed a hole in the sock.", "The fish twisted and turned on the bent hook.",
    "Press the pants and sew a button on the vest.", "The swan dive was far short of perfect.",
    "The beauty of the view stunned the young boy.", "Two blue fish swam in the tank.",
    "Her purse was full of useless trash.", "The colt reared and threw the tall rider.",
    "It snowed, rained, and hailed the same morning.", "Read verse out loud for pleasure.",
    "Hoist the load to your left shoulder.", "Take the winding path to reach the lake.",
    "Note closely the size of the gas tank.", "Wipe the grease off his dirty face.",
)


@dataclass(frozen=True)
class PartAudio:
    """The folders of one part's audio (`<voice>/<nn>.wav` in each); the last two are empty for a part that
    the split's `false_copies` does not extend."""

    corpus: Path  # the part's voices reading the corpus sentences
    new: Path  # the same voices reading `utterances.new` other sentences
    more_new: Path  # the same voices reading `false_copies.new_sentences` MORE_SENTENCES
    same_words: Path  # the partner part's voices reading this part's corpus sentences, in the corpus's order


def build(out_dir: Path, part: str) -> PartAudio:
    """The part's recordings (see PartAudio), synthesised once."""
    from privacy_corpus import SENTENCES, synthesise

    split = load_split()
    counts, extra = split["utterances"], split["false_copies"]
    if counts["corpus"] + counts["new"] > len(SENTENCES) or extra["new_sentences"] > len(MORE_SENTENCES):
        raise SystemExit(f"{SPLIT_FILE}: utterances ask for more sentences than there are")
    root = out_dir / part
    audio = PartAudio(root / "corpus", root / "new", root / "more_new", root / "same_words")
    jobs = []
    for voice, (engine, name) in split[part]["voices"].items():
        for i, text in enumerate(SENTENCES[: counts["corpus"] + counts["new"]]):
            folder, n = (audio.corpus, i) if i < counts["corpus"] else (audio.new, i - counts["corpus"])
            jobs.append((engine, name, text, folder / voice / f"{n:02d}.wav"))
    partner = extra["same_words_other_voices"].get(part)
    if partner is not None:
        for voice, (engine, name) in split[part]["voices"].items():
            for n, text in enumerate(MORE_SENTENCES[: extra["new_sentences"]]):
                jobs.append((engine, name, text, audio.more_new / voice / f"{n:02d}.wav"))
        for voice, (engine, name) in split[partner]["voices"].items():
            for n, text in enumerate(SENTENCES[: counts["corpus"]]):
                jobs.append((engine, name, text, audio.same_words / voice / f"{n:02d}.wav"))
    for engine, name, text, path in jobs:
        if not path.exists():
            synthesise(engine, name, text, path)
    return audio


def _files(folder: Path) -> list:
    """The recordings under `folder` (a corpus layout), none when it does not exist."""
    from pipeline.training.corpus import list_corpus

    return list_corpus(folder, "benchmark recordings") if folder.is_dir() else []


# What is not a copy, judged under every tool but the splices: (row label, PartAudio field).
NOT_COPIES = (("new recording", "new"), ("new recording, more sentences", "more_new"),
              ("same words, other voice", "same_words"))


def measure(out_dir: Path, part: str, ratio: float | None) -> dict:
    from pipeline.config import PrivacyConfig
    from pipeline.privacy.calibration import rate_entry
    from pipeline.privacy.copycheck import build_baseline, clip_dcr
    from pipeline.training.corpus import list_corpus, read_audio, split

    spec = load_split()
    ratio = PrivacyConfig().copy_ratio if ratio is None else ratio
    audio = build(out_dir, part)
    train_files, holdout_files = split(list_corpus(audio.corpus), spec["holdout_fraction"])
    train = [read_audio(f.path) for f in train_files]
    t = time.perf_counter()
    baseline = build_baseline(train, [read_audio(f.path) for f in holdout_files], ratio)
    not_copies = {label: _files(getattr(audio, field)) for label, field in NOT_COPIES}
    recordings = {label: [read_audio(f.path) for f in files] for label, files in not_copies.items()}
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as scratch:
        part_tools = tools(part, Path(scratch), other_speech=recordings["new recording"][0])
        for name, tool in part_tools.items():
            measured = [clip_dcr(baseline, tool(clip, seed)) for seed, clip in enumerate(train)]
            caught = sum(d is not None and d < baseline.threshold for d in measured)
            rows[f"copy: {name}"] = rate_entry(caught, len(train))
            if name.endswith("inside new speech"):
                continue  # made of a training recording: not a new recording under the tool
            for label, clips in recordings.items():
                if not clips:
                    continue
                judged = [clip_dcr(baseline, tool(clip, seed)) for seed, clip in enumerate(clips)]
                wrong = sum(d is not None and d < baseline.threshold for d in judged)
                rows[f"{label}: {name}"] = rate_entry(wrong, len(clips))
        printed = fingerprint_rows(part_tools, train_files + holdout_files, not_copies)
    copies = [r for k, r in rows.items() if k.startswith("copy: ")]
    news = [r for k, r in rows.items() if not k.startswith("copy: ")]
    return {
        "part": part, "split_sha256": hashlib.sha256(SPLIT_FILE.read_bytes()).hexdigest(), "ratio": ratio,
        "threshold_db": round(baseline.threshold, 4), "closest_held_out_db": round(float(baseline.holdout_dcr.min()), 4),
        "training_recordings": len(train), "held_out_recordings": len(holdout_files),
        "new_recordings": {label: len(clips) for label, clips in recordings.items()},
        "rows": rows,
        "copies_caught": rate_entry(sum(r["hits"] for r in copies), sum(r["trials"] for r in copies)),
        "new_taken_for_copies": rate_entry(sum(r["hits"] for r in news), sum(r["trials"] for r in news)),
        "fingerprint": printed,
        "seconds": round(time.perf_counter() - t, 1),
    }


def _joined(files: list, per: int = 3) -> list[np.ndarray]:
    """Each voice's recordings (in name order) joined `per` at a time: Chromaprint needs about 4.6 s."""
    from pipeline.training.corpus import read_audio

    by_voice: dict[str, list] = {}
    for f in sorted(files, key=lambda f: str(f.path)):
        by_voice.setdefault(f.speaker, []).append(read_audio(f.path))
    return [np.concatenate(clips[k: k + per]) for clips in by_voice.values() for k in range(0, len(clips) - per + 1, per)]


def fingerprint_rows(part_tools: dict, corpus_files: list, not_copies: dict[str, list]) -> dict:
    """The near-copy detector (privacy/fingerprint.py) on long recordings: every corpus recording (training and
    held-out: the detector compares with both) through each tool, caught when its fingerprint comes within MAX_BER
    of one; recordings that are not copies (`not_copies`: label -> files; new sentences of the same voices, the
    same words from other voices) through the same tools, taken for copies when they do. Audio too short to
    fingerprint (the spliced tools' 3.5-5 s) is counted, not judged."""
    from pipeline.privacy.calibration import rate_entry
    from pipeline.privacy.fingerprint import MAX_BER, closest, fingerprint

    corpus = _joined(corpus_files)
    others = {label: _joined(files) for label, files in not_copies.items() if files}
    records = [fingerprint(audio, RATE) for audio in corpus]
    rows: dict[str, dict] = {}
    for name, tool in part_tools.items():
        for kind, recordings in (("copy", corpus), *others.items()):
            if kind != "copy" and name.endswith("inside new speech"):
                continue
            found = [closest(fingerprint(tool(audio, seed), RATE), records) for seed, audio in enumerate(recordings)]
            judged = [ber for ber in found if ber is not None]
            entry = rate_entry(sum(ber < MAX_BER for ber in judged), len(judged)) if judged else {"trials": 0}
            rows[f"{kind}: {name}"] = {**entry, "too_short": len(found) - len(judged),
                                       "ber_range": [round(min(judged), 3), round(max(judged), 3)] if judged else None}
    wrong = [r for k, r in rows.items() if not k.startswith("copy: ") and r["trials"]]
    return {"max_ber": MAX_BER, "corpus_recordings": len(corpus),
            "not_copies": {label: len(recordings) for label, recordings in others.items()}, "rows": rows,
            "not_copies_taken_for_copies": rate_entry(sum(r["hits"] for r in wrong), sum(r["trials"] for r in wrong)),
            "lowest_ber_of_a_non_copy": min((r["ber_range"][0] for r in wrong), default=None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="where the part's audio is synthesised (reused when there)")
    parser.add_argument("--part", choices=("tuning", "held_out", "held_out_2", "held_out_3"), default="held_out")
    parser.add_argument("--ratio", type=float, help="privacy.copy_ratio to judge at (default: the config default)")
    args = parser.parse_args()
    result = measure(args.out_dir, args.part, args.ratio)
    print(f"part {result['part']} (split sha256 {result['split_sha256'][:12]}), {result['training_recordings']} "
          f"training / {result['held_out_recordings']} held-out recordings; copy when DCR < {result['ratio']} x "
          f"{result['closest_held_out_db']} dB = {result['threshold_db']} dB")
    print(f"  {'':52} {'rate':>6} {'95% CI':>15} {'n':>4}")
    for name, row in result["rows"].items():
        low, high = row["ci95"]
        print(f"  {name:52} {row['rate']:6.3f} [{low:.3f}, {high:.3f}] {row['trials']:4d}")
    for key, label in (("copies_caught", "copies caught"), ("new_taken_for_copies", "new recordings taken for copies")):
        row = result[key]
        print(f"  {label}: {row['hits']} of {row['trials']} ({row['rate']:.3f}, 95% CI {row['ci95']})")
    printed = result["fingerprint"]
    others = ", ".join(f"{n} {label}" for label, n in printed["not_copies"].items())
    print(f"near-copy detector (Chromaprint, BER < {printed['max_ber']}) on {printed['corpus_recordings']} corpus "
          f"recordings and recordings that are not copies ({others}), three sentences each:")
    for name, row in printed["rows"].items():
        if not row["trials"]:
            print(f"  {name:52} {'too short to fingerprint':>26} {row['too_short']:4d}")
            continue
        low, high = row["ci95"]
        print(f"  {name:52} {row['rate']:6.3f} [{low:.3f}, {high:.3f}] {row['trials']:4d}  BER {row['ber_range']}")
    row = printed["not_copies_taken_for_copies"]
    print(f"  not copies taken for copies: {row['hits']} of {row['trials']} ({row['rate']:.3f}, 95% CI {row['ci95']}); "
          f"lowest BER of a recording that is not a copy {printed['lowest_ber_of_a_non_copy']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
