"""Speaker encoders behind one small interface; scoring never depends on which one is used.

Two are known: resemblyzer's GE2E with the weights its package ships (`resemblyzer-ge2e`), and the same network
fine-tuned to hear a voice through music and rooms (`resemblyzer-ge2e-robust`, `robust_encoder.py`; its weights ship
with this package), which the leak check uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.parallel import single_thread


SHIPPED = "resemblyzer-ge2e"
ROBUST = "resemblyzer-ge2e-robust"
DEFAULT_ENCODER = ROBUST  # privacy benchmark, 2026-12-07: benchmarks/PRIVACY.md
WINDOW_S = 3.0  # a leaked voice lasting this long inside a longer clip is scored on its own
WINDOW_HOP_S = 1.5


class SpeakerEncoder(Protocol):
    name: str
    version: str
    embedding_size: int
    sample_rate: int

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """Unit-norm embedding (embedding_size,) of a mono signal, or None if it holds no voiced speech."""

    def embed_windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        """Unit-norm embeddings (windows, embedding_size): the whole voiced part first, then overlapping
        windows of it when it is longer than one window; None if the signal holds no voiced speech."""


class SpeechDetector:
    """Silero VAD (its weights ship inside the `silero-vad` package: nothing is downloaded): does a 16 kHz signal hold
    speech at all? resemblyzer's own VAD (webrtcvad) takes music for speech, and GE2E then hears a voice in it: on the
    privacy benchmark's `tuning` part, 75% of its clips of sampled-instrument music with no voice were taken for a
    reference voice. There, every one of the tuning parts' 2,568 clips with a voice in it (under music at 0 dB, in a
    2 s hall, 3 s of it inside 10 s of music, through a telephone band) peaked at a speech probability of 0.615 or
    more, and their 216 clips of music or noise alone at 0.432 at most. It only decides whether a clip is heard at
    all: what the encoder hears of a voiced clip is cut by webrtcvad as before (cutting by Silero was tried: it did not
    transfer to the held-out parts; README)."""

    THRESHOLD = 0.4  # below silero's default of 0.5: a voice missed here is a clip passed unscored

    def __init__(self):
        import torch

        threads = torch.get_num_threads()
        try:
            from silero_vad import load_silero_vad  # its import sets torch's thread count to 1, process-wide

            self._model = load_silero_vad()  # TorchScript, from the package's own data
        finally:
            torch.set_num_threads(threads)  # generation and everything else in this process keep theirs

    def hears_speech(self, audio: np.ndarray) -> bool:
        """Whether any 32 ms frame (512 samples) of a 16 kHz signal reaches a speech probability of THRESHOLD. The
        frames go through the network one by one, its state carried over as in silero's own `audio_forward` (the same
        probabilities), and stop at the first that does: a clip that opens with speech costs a few frames, not the
        whole clip (which, on one core, takes silero longer than the speaker encoder takes)."""
        import torch

        frames = torch.from_numpy(np.ascontiguousarray(audio, np.float32))
        frames = torch.nn.functional.pad(frames, (0, -frames.numel() % 512)).reshape(-1, 512)  # (frames, 512)
        with single_thread(), torch.no_grad():
            self._model.reset_states()
            try:
                return any(float(self._model(frame[None], 16_000)) >= self.THRESHOLD for frame in frames)
            finally:
                self._model.reset_states()


class ResemblyzerEncoder:
    """resemblyzer's GE2E voice encoder, with the weights resemblyzer ships (`SHIPPED`) or our fine-tuned ones
    (`ROBUST`, checked against their recorded sha256); nothing is downloaded."""

    embedding_size = 256
    sample_rate = 16_000
    min_voiced_s = 0.3  # less voiced speech than this after VAD trimming: no voice to compare

    def __init__(self, name: str = DEFAULT_ENCODER, device: str = "cpu"):
        from resemblyzer import VoiceEncoder

        self.name = name
        self.version = encoder_version(name)
        self._encoder = VoiceEncoder(device, verbose=False, weights_fpath=_weights(name))
        self._speech = SpeechDetector()

    def voiced(self, audio: np.ndarray, sample_rate: int, known_speech: bool = False) -> np.ndarray | None:
        """The voiced part at 16 kHz (VAD-trimmed, volume-normalised), or None when under min_voiced_s or when
        `SpeechDetector` hears no speech in it. `known_speech`: the signal is speech (an enrolled utterance's voiced
        part under an enrolment variant, whose music at 0 dB may hide it from the detector): not asked."""
        import librosa
        from resemblyzer import preprocess_wav

        audio = np.asarray(audio, dtype=np.float32)  # (samples,) @ sample_rate
        if audio.ndim != 1 or audio.size == 0 or not np.all(np.isfinite(audio)):
            raise ValueError(f"cannot embed: expected a finite, non-empty mono signal, got shape {audio.shape}")
        if np.max(np.abs(audio)) == 0:
            return None
        if sample_rate != self.sample_rate:
            audio = librosa.resample(audio, orig_sr=sample_rate, target_sr=self.sample_rate)  # as preprocess_wav does
        if not known_speech and not self._speech.hears_speech(audio):
            return None
        speech = preprocess_wav(audio)  # (samples,) @ 16 kHz, volume-normalised, silences trimmed
        return speech if speech.size >= self.min_voiced_s * self.sample_rate else None

    def embed(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        return self.embed_many([audio], sample_rate)[0]

    def embed_windows(self, audio: np.ndarray, sample_rate: int) -> np.ndarray | None:
        return self.embed_windows_many([audio], sample_rate)[0]

    def embed_many(self, signals: Sequence[np.ndarray], sample_rate: int,
                   known_speech: bool = False) -> list[np.ndarray | None]:
        """`embed` of each signal, their partial utterances through the network in one batch (`known_speech`: see
        `voiced`)."""
        found = self._partials(signals, sample_rate, known_speech)
        return [None if one is None else one[0] for one in found]

    def embed_windows_many(self, signals: Sequence[np.ndarray], sample_rate: int) -> list[np.ndarray | None]:
        """`embed_windows` of each signal, their partial utterances through the network in one batch."""
        results = []
        for found in self._partials(signals, sample_rate):
            if found is None:
                results.append(None)
                continue
            whole, partials, slices, size = found
            windows = [whole]
            window, hop = int(WINDOW_S * self.sample_rate), int(WINDOW_HOP_S * self.sample_rate)
            if size > window:
                starts = list(range(0, size - window + 1, hop))
                if starts[-1] + window < size:
                    starts.append(size - window)
                for start in starts:
                    inside = [i for i, s in enumerate(slices) if s.start >= start and s.stop <= start + window]
                    if inside:
                        mean = partials[inside].mean(axis=0)
                        windows.append(mean / np.linalg.norm(mean))
            results.append(np.stack(windows).astype(np.float32))  # (windows, 256)
        return results

    def _partials(self, signals: Sequence[np.ndarray], sample_rate: int,
                  known_speech: bool = False) -> list[tuple | None]:
        """Per signal: (whole embedding, partial embeddings (n, 256), their sample slices, voiced samples), or
        None without voiced speech. resemblyzer's `embed_utterance` (1.6 s partials, 1.3 per second, the last
        kept at 75% coverage), with every signal's partials in one forward pass: a batch of a few partials
        leaves the LSTM's products mostly overhead (about 3x slower per partial, measured on one core)."""
        import torch
        from resemblyzer.audio import wav_to_mel_spectrogram

        voiced = [self.voiced(audio, sample_rate, known_speech) for audio in signals]
        mels, slices = [], []
        for speech in voiced:
            if speech is None:
                continue
            wav_slices, mel_slices = self._encoder.compute_partial_slices(speech.size, 1.3, 0.75)
            padded = np.pad(speech, (0, max(0, wav_slices[-1].stop - speech.size)))
            mel = wav_to_mel_spectrogram(padded)  # (frames, 40)
            mels.append(np.array([mel[s] for s in mel_slices]))  # (partials, 160, 40)
            slices.append(wav_slices)
        if not mels:
            return [None] * len(signals)
        with single_thread(), torch.no_grad():  # the same float sums whatever the thread settings
            batch = self._encoder(torch.from_numpy(np.concatenate(mels)).to(self._encoder.device)).cpu().numpy()
        bounds = np.cumsum([0] + [len(m) for m in mels])
        found = iter(range(len(mels)))
        results = []
        for speech in voiced:
            if speech is None:
                results.append(None)
                continue
            i = next(found)
            partials = batch[bounds[i]:bounds[i + 1]]
            mean = partials.mean(axis=0)
            results.append(((mean / np.linalg.norm(mean)).astype(np.float32), partials, slices[i], speech.size))
        return results


def _known(name: str) -> None:
    if name not in (SHIPPED, ROBUST):
        raise ValueError(f"unknown speaker encoder {name!r}; known: {ROBUST}, {SHIPPED}")


def _weights(name: str) -> Path | None:
    """The weights file of encoder `name` (None: resemblyzer's own), verified against its recorded sha256."""
    _known(name)
    if name == SHIPPED:
        return None
    from pipeline.files import sha256_file
    from pipeline.privacy.robust_encoder import ROBUST_WEIGHTS, ROBUST_WEIGHTS_SHA256

    if not ROBUST_WEIGHTS.is_file() or sha256_file(ROBUST_WEIGHTS) != ROBUST_WEIGHTS_SHA256:
        raise RuntimeError(f"the leak check's encoder weights {ROBUST_WEIGHTS} are missing or damaged (expected "
                           f"sha256 {ROBUST_WEIGHTS_SHA256}): reinstall the package (make install)")
    return ROBUST_WEIGHTS


def encoder_version(name: str = DEFAULT_ENCODER) -> str:
    """The encoder's version (its packages' and, for the fine-tuned one, its weights' hash), read without loading
    the package or its weights."""
    from importlib.metadata import PackageNotFoundError, version

    _known(name)

    def installed(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "unknown"

    weights = ""
    if name == ROBUST:
        from pipeline.privacy.robust_encoder import ROBUST_WEIGHTS_SHA256

        weights = f"+robust-{ROBUST_WEIGHTS_SHA256[:12]}"
    return f"resemblyzer-{installed('resemblyzer')}{weights}+silero-vad-{installed('silero-vad')}"


def load_encoder(name: str = DEFAULT_ENCODER) -> SpeakerEncoder:
    return ResemblyzerEncoder(name)
