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

    from pipeline.privacy.encoder import load_encoder
    from pipeline.privacy.test_voices import synthesise

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voices", type=Path, default=REPO / "var" / "reference_voices_bench")
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--methods", default="plain,search",
                        help="plain: embed the clip; search: also band-limited, tone-suppressed and +-1/2 semitone "
                             "versions, scored against clean and band-limited centroids")
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
    for audio in clips:
        encoder.embed(audio, RATE)
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

    # 3. robustness table, for the plain check and for a search over undoing transformations
    for method in args.methods.split(","):
        robustness(method, encoder, reference, outsiders)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def suppress_stationary(audio: np.ndarray) -> np.ndarray:
    """Subtract each frequency's median magnitude over time: removes steady tones, keeps moving speech."""
    import librosa

    spectrum = librosa.stft(audio, n_fft=1024, hop_length=256)  # (freqs, frames)
    magnitude, phase = np.abs(spectrum), np.angle(spectrum)
    cleaned = np.maximum(magnitude - 1.5 * np.median(magnitude, axis=1, keepdims=True), 0.0)
    return librosa.istft(cleaned * np.exp(1j * phase), hop_length=256, length=audio.size).astype(np.float32)


def candidates(audio: np.ndarray, method: str) -> list[np.ndarray]:
    """Versions of a clip to embed: the clip itself, or also versions that undo likely transformations."""
    import librosa

    if method == "plain":
        return [audio]
    band = librosa.resample(librosa.resample(audio, orig_sr=RATE, target_sr=8000), orig_sr=8000, target_sr=RATE)
    out = [audio, band, suppress_stationary(audio)]
    out += [librosa.effects.pitch_shift(audio, sr=RATE, n_steps=s) for s in (-2, -1, 1, 2)]
    return [a.astype(np.float32) for a in out]


def best_score(encoder, audio: np.ndarray, centroids: list[np.ndarray], method: str) -> float | None:
    scores = []
    for version in candidates(audio, method):
        embedding = encoder.embed(version, RATE)
        if embedding is not None:
            scores.append(max(float(c @ embedding) for c in centroids))
    return max(scores) if scores else None


def robustness(method: str, encoder, reference: dict, outsiders: dict) -> dict:
    """Leave-one-out recall per transformation and FPR on outsiders, at a threshold calibrated on clean trials."""
    import librosa

    from pipeline.privacy.calibration import calibrate

    def enrol(utterances: list[np.ndarray]) -> list[np.ndarray]:  # clean and 8 kHz centroids
        clean = [encoder.embed(u, RATE) for u in utterances]
        band = [encoder.embed(librosa.resample(librosa.resample(u, orig_sr=RATE, target_sr=8000),
                                               orig_sr=8000, target_sr=RATE), RATE) for u in utterances]
        return [_unit(np.mean(clean, axis=0))] + ([_unit(np.mean(band, axis=0))] if method != "plain" else [])

    full = {s: enrol(u) for s, u in reference.items()}
    loo = {(s, i): enrol([u for j, u in enumerate(us) if j != i]) for s, us in reference.items() for i in range(len(us))}

    def genuine_and_impostor(transform) -> tuple[list, list]:
        genuine, impostor = [], []
        for (speaker, i), own in loo.items():
            rivals = [c for s, cs in full.items() if s != speaker for c in cs]
            audio = transform(reference[speaker][i]).astype(np.float32)
            genuine.append(best_score(encoder, audio, own + rivals, method))
        for per in outsiders.values():
            for audio in per:
                impostor.append(best_score(encoder, transform(audio).astype(np.float32),
                                           [c for cs in full.values() for c in cs], method))
        return genuine, impostor

    t = time.perf_counter()
    clean_genuine, clean_impostor = genuine_and_impostor(lambda a: a)
    threshold = calibrate(np.array([g for g in clean_genuine if g is not None]),
                          np.array([s for s in clean_impostor if s is not None]), 0.99).threshold
    table = {"method": method, "threshold": round(threshold, 4)}
    for name, transform in transforms().items():
        genuine, impostor = (clean_genuine, clean_impostor) if name == "clean" else genuine_and_impostor(transform)
        scored = [g for g in genuine if g is not None]
        table[name] = {"recall": round(np.mean([g is not None and g >= threshold for g in genuine]), 3),
                       "fpr": round(np.mean([s is not None and s >= threshold for s in impostor]), 3),
                       "genuine_p05": round(float(np.percentile(scored, 5)), 3) if scored else None,
                       "impostor_max": round(max((s for s in impostor if s is not None), default=float("nan")), 3)}
    table["trials"] = {"genuine": len(clean_genuine), "impostor": len(clean_impostor)}
    table["seconds"] = round(time.perf_counter() - t, 1)
    print(json.dumps(table), flush=True)
    return table


if __name__ == "__main__":
    main()
