"""Voices no installed synthesiser has: espeak-ng voice variants made from a seed, and the rule that picks the ones far
from every voice the benchmark, the cohort and the encoder's training already use.

    python benchmarks/privacy_made_voices.py --count 12 [--candidates 200] [--first-seed 1] [--out DIR] [--json FILE]

Why: the leak check's false-positive bound is set on the cohort's voices, and whether it holds for voices that
neither calibration nor the encoder's training has heard is what a benchmark part must be able to show before a
held-out part is measured (benchmarks/PRIVACY.md, seventh session). espeak-ng's 101 variants are nearly used up by
the parts, the cohort and the training experiments. A variant is a short text file (pitch, six formants' frequency,
height and width, voice quality: espeak-ng's own format), so new ones can be made from a seed, and
`test_voices.espeak_data` lets `espeak-ng --path` read with them.

`made_variant(seed)` draws one; the candidates are seeds 1, 2, 3, ... in order (`--first-seed`: training voices
are drawn from 1001-1999 and benchmark parts from outside it, `tuning_made` from 1 and `tuning_made2` from 2001, so
no seed is both). The rule picks the first `--count` whose clean centroid (resemblyzer's own
weights, the benchmark's first 4 sentences, 16 kHz) is under `--max-cosine` (0.90, `held_out_espeak2`'s rule) to
every voice of every part of `privacy_split.json` (reference, another synthesiser, impostors), every cohort voice,
every `--also` voice (the encoder-training experiments' extra voices) and every voice already picked. Printed as
JSON: the picked variants' texts and the nearest voice of each; the split commits the texts, so the part does not
depend on this file staying as it is.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

MAX_COSINE = 0.90
ENGLISH = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029")
# the 24 extra training voices of the seventh session's encoder experiments (C6, C7; benchmarks/PRIVACY.md)
TRAINING_EXTRAS = tuple(f"en+{name}" for name in (
    "Alicia", "Andrea", "AnxiousAndy", "Demonic", "Marco", "Michael", "Nguyen", "RicishayMax", "Storm", "UniRobot",
    "anika", "announcer", "antonio", "iven2", "kaukovalta", "marcelo", "michel", "paul", "robosoft", "robosoft2",
    "robosoft3", "robosoft6", "robosoft8", "sandro"))


def made_variant(seed: int) -> tuple[str, str]:
    """(English base voice, variant file text) drawn from `seed`: a gender, a pitch base and range in that gender's
    span, each of six formants' frequency, height and width scaled (% of the base voice's; female voices' formants
    higher, as espeak-ng's own f1-f5 are), flutter, roughness, voicing and consonant levels, and in one of four a
    Klatt synthesiser instead of the default one."""
    rng = random.Random(f"made-variant-{seed}")
    female = rng.random() < 0.5
    pitch = rng.randint(150, 240) if female else rng.randint(65, 135)
    low, high = (100, 125) if female else (85, 110)
    lines = ["language variant", f"name made{seed:03d}", f"gender {'female' if female else 'male'}", "",
             f"pitch {pitch} {pitch + rng.randint(25, 100)}"]
    lines += [f"formant {k} {rng.randint(low, high)} {rng.randint(60, 140)} {rng.randint(60, 160)}" for k in range(6)]
    lines += [f"flutter {rng.randint(0, 40)}", f"roughness {rng.randint(0, 4)}", f"voicing {rng.randint(70, 160)}",
              f"consonants {rng.randint(70, 130)}"]
    if rng.random() < 0.25:
        lines.append(f"klatt {rng.randint(1, 4)}")
    return rng.choice(ENGLISH), "\n".join(lines) + "\n"


def known_voices(also: tuple[str, ...], out: Path) -> dict[str, tuple[str, str, Path | None]]:
    """Every voice the split's parts, the cohort and `also` (espeak-ng voices) use: label -> (engine, voice, the
    espeak-ng data folder of a part's made variants or None)."""
    from privacy_corpus import load_split, split_parts

    from pipeline.privacy.cohort import COHORT_VOICES
    from pipeline.privacy.test_voices import espeak_data

    split = load_split()
    voices = {}
    for part in split_parts():
        made = espeak_data(split[part]["variants"], out / f"part-{part}") if split[part].get("variants") else None
        for group in ("reference", "another_synthesiser", "impostors"):
            for speaker, (engine, voice) in split[part][group].items():
                voices[f"{engine}:{voice}"] = (engine, voice, made)
    voices.update({f"{engine}:{voice}": (engine, voice, None) for _, engine, voice in COHORT_VOICES})
    voices.update({f"espeak-ng:{voice}": ("espeak-ng", voice, None) for voice in also})
    return voices


def centroid(encoder, engine: str, voice: str, scratch: Path, data: Path | None = None) -> np.ndarray:
    """The unit mean of resemblyzer's utterance embeddings of the benchmark's first 4 sentences read by `voice`."""
    from privacy_corpus import SENTENCES, synthesise
    from resemblyzer import preprocess_wav

    embeddings = []
    for number, text in enumerate(SENTENCES[:4]):
        path = scratch / f"{engine}-{voice}-{number}.wav".replace("/", "_")
        synthesise(engine, voice, text, path, espeak_path=data)
        embeddings.append(encoder.embed_utterance(preprocess_wav(path)))
    mean = np.mean(embeddings, axis=0)
    return mean / np.linalg.norm(mean)


def pick(count: int, candidates: int, max_cosine: float, also: tuple[str, ...], out: Path, first_seed: int = 1) -> dict:
    """Apply the module's rule; returns {"picked": {name: {"base", "variant", "nearest", "cosine"}}, "turned_down"}."""
    from resemblyzer import VoiceEncoder

    from pipeline.privacy.test_voices import MAX_MADE_VARIANTS, espeak_data
    from pipeline.progress import progress

    encoder = VoiceEncoder("cpu", verbose=False)
    made = {f"made{seed:03d}": made_variant(seed) for seed in range(first_seed, first_seed + candidates)}
    names = list(made)
    data = {}  # the candidates' data folders, MAX_MADE_VARIANTS to a folder
    for start in range(0, len(names), MAX_MADE_VARIANTS):
        block = names[start:start + MAX_MADE_VARIANTS]
        folder = espeak_data({name: made[name][1] for name in block}, out / f"espeak-data-{start // MAX_MADE_VARIANTS}")
        data.update(dict.fromkeys(block, folder))
    with tempfile.TemporaryDirectory() as scratch:
        known = {label: centroid(encoder, engine, voice, Path(scratch), made_data)
                 for label, (engine, voice, made_data) in progress(known_voices(also, out).items(),
                                                                     desc="known voices")}
        picked, turned_down = {}, {}
        for name, (base, text) in progress(made.items(), desc="candidates"):
            if len(picked) == count:
                break
            mine = centroid(encoder, "espeak-ng", f"{base}+{name}", Path(scratch), data[name])
            cosines = {label: float(mine @ other) for label, other in known.items()}
            nearest = max(cosines, key=cosines.get)
            entry = {"base": base, "variant": text, "nearest": nearest, "cosine": round(cosines[nearest], 4)}
            if cosines[nearest] < max_cosine:
                picked[name] = entry
                known[f"espeak-ng:{base}+{name}"] = mine
            else:
                turned_down[name] = {"nearest": nearest, "cosine": entry["cosine"]}
    if len(picked) < count:
        raise SystemExit(f"only {len(picked)} of {candidates} candidates are under {max_cosine} to every known voice: "
                         f"raise --candidates")
    return {"rule": __doc__.split("\n\n")[3], "max_cosine": max_cosine, "picked": picked, "turned_down": turned_down}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, required=True, help="how many voices to pick")
    parser.add_argument("--candidates", type=int, default=200,
                        help="how many seeds are candidates, in order from --first-seed")
    parser.add_argument("--first-seed", type=int, default=1,
                        help="1 for the benchmark's tuning_made, 2001 for tuning_made2; training voices are drawn "
                             "from 1001-1999")
    parser.add_argument("--max-cosine", type=float, default=MAX_COSINE)
    parser.add_argument("--also", default=",".join(TRAINING_EXTRAS),
                        help="more espeak-ng voices to keep apart from (default: the training experiments' 24)")
    parser.add_argument("--out", type=Path, default=REPO / "var" / "privacy_bench" / "_made_voices")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    result = pick(args.count, args.candidates, args.max_cosine, tuple(v for v in args.also.split(",") if v), args.out,
                  args.first_seed)
    text = json.dumps(result, indent=1)
    if args.json:
        args.json.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
