"""The impostor cohort: voices that are *not* in the reference set, synthesised offline at run time.

The leak check needs impostors for two things, without asking the user for anyone's voice:
- **score normalisation**: a clip's similarity to a reference speaker is compared with its similarity
  to the cohort under the same kind of condition (a reverberant clip is close to every reverberant
  voice; only a leak is closer to its speaker than to the cohort);
- **calibration**: the cohort's utterances under the calibration conditions are impostor trials, so the
  threshold is set against a false-positive bound, not only against genuine trials.

Voices: flite's awb, rms, slt and kal16, festival's Italian lp and Czech ph, and espeak-ng variants
(`COHORT_VOICES`), those installed (`make deps`). A cohort voice that sounds like a reference speaker
(its clean centroid within `SAME_VOICE_COSINE` of the speaker's) is left out, so a reference speaker is
never its own impostor — the embedded default's reference set is made of the flite voices. None of these
voices is in the privacy benchmark's held-out split (`benchmarks/privacy_split.json`; `tests/privacy/test_split.py`),
but an espeak-ng voice is mostly its variant, and `en-us+f4` shares its variant with `held_out_espeak`'s impostor
`cs+f4` (`held_out_espeak2` shares none: benchmarks/PRIVACY.md).
Files are written once under `<cache>/cohort/` and embedded (cached like reference files).
"""

from __future__ import annotations

import logging
import random
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.privacy.reference import ReferenceFile
from pipeline.files import exclusive, sha256_file

log = logging.getLogger("synthaudio.privacy")

# (cohort voice id, engine, voice)
COHORT_VOICES: tuple[tuple[str, str, str], ...] = (
    ("flite_awb", "flite", "awb"), ("flite_rms", "flite", "rms"), ("flite_slt", "flite", "slt"),
    ("flite_kal16", "flite", "kal16"), ("fest_lp", "festival", "lp_diphone"), ("fest_ph", "festival", "czech_ph"),
    ("esp_en_m1", "espeak-ng", "en+m1"), ("esp_en_m3", "espeak-ng", "en+m3"), ("esp_en_f2", "espeak-ng", "en+f2"),
    ("esp_enus_m2", "espeak-ng", "en-us+m2"), ("esp_enus_f4", "espeak-ng", "en-us+f4"),
    ("esp_sc_m4", "espeak-ng", "en-gb-scotland+m4"), ("esp_rp_f1", "espeak-ng", "en-gb-x-rp+f1"),
    ("esp_029_m7", "espeak-ng", "en-029+m7"), ("esp_en_andy", "espeak-ng", "en+Andy"),
    ("esp_en_linda", "espeak-ng", "en+Linda"), ("esp_nyc_mike", "espeak-ng", "en-us-nyc+Mike"),
    ("esp_en_grandma", "espeak-ng", "en+grandma"),
)
UTTERANCES_PER_VOICE = 6
SAME_VOICE_COSINE = 0.85  # clean centroids this close: the cohort voice is taken for a reference speaker
COHORT_VERSION = "1"


@dataclass(frozen=True)
class CohortVoice:
    voice: str
    files: tuple[ReferenceFile, ...]


def _available(engine: str, voice: str) -> bool:
    from pipeline.privacy.test_voices import _festival_voice_installed

    if engine == "festival":
        return _festival_voice_installed(voice)
    return shutil.which(engine) is not None


def synthesise_cohort(cache_dir: Path) -> list[CohortVoice]:
    """The cohort's files (written once under `cache_dir/cohort/`); voices whose synthesiser is missing are
    skipped with a warning. Raises BadInput when no voice at all can be made."""
    from pipeline.errors import BadInput
    from pipeline.privacy.test_voices import SENTENCES, _espeak, _festival, _flite, synthesise_files

    synths = {"flite": _flite, "festival": _festival, "espeak-ng": _espeak}
    root = cache_dir / f"cohort-v{COHORT_VERSION}"
    planned, missing = {}, []
    for voice_id, engine, voice in COHORT_VOICES:
        if not _available(engine, voice):
            missing.append(f"{engine} {voice}")
            continue
        texts = random.Random(voice_id).sample(SENTENCES, UTTERANCES_PER_VOICE)
        planned[voice_id] = [(synths[engine], voice, text, root / voice_id / f"{number:02d}.wav")
                             for number, text in enumerate(texts)]
    with exclusive(cache_dir / ".cohort.lock"):  # runs sharing a cache synthesise each file once
        synthesise_files([job for jobs in planned.values() for job in jobs])
    voices = [CohortVoice(voice_id, tuple(ReferenceFile(voice_id, path, sha256_file(path)) for *_, path in jobs))
              for voice_id, jobs in planned.items()]
    if missing:
        log.warning("impostor cohort: %d voice(s) not installed (%s); `make deps` installs them",
                    len(missing), ", ".join(missing))
    if not voices:
        raise BadInput("the leak check's impostor cohort needs flite, festival or espeak-ng: "
                       "`apt-get install flite festival espeak-ng festvox-italp16k festvox-czech-ph` (make deps)")
    return voices


def drop_reference_lookalikes(cohort: list[tuple[CohortVoice, np.ndarray]], centroids: np.ndarray,
                              clean_variant: int = 0, same_voice_cosine: float = SAME_VOICE_COSINE,
                              ) -> list[tuple[CohortVoice, np.ndarray]]:
    """Leave out cohort voices whose clean centroid is within `same_voice_cosine` of a reference speaker's.

    `cohort`: (voice, (files, variants, dim) enrolment embeddings); `centroids`: (speakers, variants, dim)."""
    kept = []
    for voice, embeddings in cohort:
        mean = embeddings[:, clean_variant].mean(axis=0)
        similarity = centroids[:, clean_variant] @ (mean / np.linalg.norm(mean))  # (speakers,)
        if similarity.max() >= same_voice_cosine:
            log.info("impostor cohort: %s left out (it sounds like a reference speaker)", voice.voice)
            continue
        kept.append((voice, embeddings))
    return kept
