"""Leak-check measurements (run on demand): throughput, scoring scale, and robustness to transformations.

    python benchmarks/privacy.py [--voices var/reference_voices_bench] [--sentences 8]

1. Embedding throughput of the scoring path (decode -> VAD -> GE2E) in audio-seconds per wall-second.
2. Scoring time of 100,000 clip windows against 10,000 reference utterances (cosine, one matmul).
3. Robustness of the current check: leave-one-out centroids per reference speaker, threshold calibrated
   on clean utterances for recall 0.99, then recall on held-out utterances that are clean, pitch-shifted
   +-2 semitones, mixed with a tone chord at 0 dB SNR, or band-limited to 8 kHz sampling; and the
   false-positive rate on voices outside the reference set. (Issue 6 targets: recall >= 0.95 on each,
   FPR <= 0.05.)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RATE = 16_000


def transforms() -> dict:
    import librosa

    def chord(audio):
        t = np.arange(audio.size) / RATE
        tones = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
        return audio + tones * (np.sqrt(np.mean(audio ** 2)) / np.sqrt(np.mean(tones ** 2)))  # 0 dB SNR

    return {
        "clean": lambda a: a,
        "pitch +2 st": lambda a: librosa.effects.pitch_shift(a, sr=RATE, n_steps=2),
        "pitch -2 st": lambda a: librosa.effects.pitch_shift(a, sr=RATE, n_steps=-2),
        "tones 0 dB": chord,
        "8 kHz band-limit": lambda a: librosa.resample(librosa.resample(a, orig_sr=RATE, target_sr=8000),
                                                       orig_sr=8000, target_sr=RATE),
    }


def main() -> None:
    import librosa
    import soundfile as sf

    from pipeline.privacy.calibration import calibrate, reference_trials
    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.test_voices import synthesise

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", type=Path, default=REPO / "var" / "reference_voices_bench")
    parser.add_argument("--sentences", type=int, default=8)
    args = parser.parse_args()
    synthesise(args.voices, sentences=args.sentences, seed=1)
    encoder = load_encoder()

    def load(folder: Path) -> dict[str, list[np.ndarray]]:
        out = {}
        for path in sorted(folder.rglob("*.wav")):
            audio, rate = sf.read(path, dtype="float32")
            out.setdefault(path.parent.name, []).append(librosa.resample(audio, orig_sr=rate, target_sr=RATE))
        return out

    reference, outsiders = load(args.voices / "reference"), load(args.voices / "non_reference")

    # 1. throughput of the scoring path
    clips = [a for per in reference.values() for a in per]
    seconds = sum(a.size for a in clips) / RATE
    t = time.perf_counter()
    embeddings = {s: [encoder.embed(a, RATE) for a in per] for s, per in reference.items()}
    wall = time.perf_counter() - t
    print(json.dumps({"embedding_audio_s": round(seconds, 1), "wall_s": round(wall, 2),
                      "audio_s_per_wall_s": round(seconds / wall, 1)}), flush=True)

    # 2. scoring scale: 100k windows x 10k reference utterances
    rng = np.random.default_rng(0)
    windows = rng.standard_normal((100_000, 256)).astype(np.float32)
    refs = rng.standard_normal((10_000, 256)).astype(np.float32)
    windows /= np.linalg.norm(windows, axis=1, keepdims=True)
    refs /= np.linalg.norm(refs, axis=1, keepdims=True)
    t = time.perf_counter()
    best = np.empty(windows.shape[0], dtype=np.float32)
    for start in range(0, windows.shape[0], 10_000):  # (10k, 10k) blocks: 400 MB at most
        best[start:start + 10_000] = (windows[start:start + 10_000] @ refs.T).max(axis=1)
    print(json.dumps({"scoring_windows": 100_000, "reference_utterances": 10_000,
                      "seconds": round(time.perf_counter() - t, 2)}), flush=True)

    # 3. robustness table
    genuine, impostor = reference_trials(embeddings, [encoder.embed(a, RATE) for per in outsiders.values() for a in per])
    threshold = calibrate(genuine, impostor, 0.99).threshold
    table = {"threshold": round(threshold, 4)}
    for name, transform in transforms().items():
        hits = trials = 0
        for speaker, utterances in reference.items():
            for i, audio in enumerate(utterances):
                others = [e for j, e in enumerate(embeddings[speaker]) if j != i]
                centroids = [np.mean(others, axis=0)] + [np.mean(e, axis=0) for s, e in embeddings.items() if s != speaker]
                centroids = [c / np.linalg.norm(c) for c in centroids]
                embedding = encoder.embed(transform(audio).astype(np.float32), RATE)
                trials += 1
                hits += embedding is not None and max(float(c @ embedding) for c in centroids) >= threshold
        false_alarms = outsider_trials = 0
        all_centroids = [np.mean(e, axis=0) / np.linalg.norm(np.mean(e, axis=0)) for e in embeddings.values()]
        for per in outsiders.values():
            for audio in per:
                embedding = encoder.embed(transform(audio).astype(np.float32), RATE)
                outsider_trials += 1
                false_alarms += embedding is not None and max(float(c @ embedding) for c in all_centroids) >= threshold
        table[name] = {"recall": round(hits / trials, 3), "fpr": round(false_alarms / max(outsider_trials, 1), 3),
                       "trials": trials, "outsider_trials": outsider_trials}
        print(json.dumps({name: table[name]}), flush=True)
    print(json.dumps(table))


if __name__ == "__main__":
    main()
