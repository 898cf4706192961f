"""Synthesise test voices with Debian's speech synthesisers: a stand-in for a private reference set.

    python -m pipeline.privacy.test_voices OUT_DIR [--sentences 4] [--seed 0]

writes `OUT_DIR/reference/<speaker_id>/<nn>.wav` (flite voices awb, rms, slt, kal16) and
`OUT_DIR/non_reference/<speaker_id>/<nn>.wav` (festival's ked, when installed): voices that are
*not* in the reference set, for false-positive checks. Sentences are chosen with the seed, so the
same arguments give the same files. Existing complete output is reused.
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.errors import BadInput
from pipeline.workspace import atomic_path

SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
)
FLITE_VOICES = ("awb", "rms", "slt", "kal16")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone")  # kal is also a flite voice: only ked is "non-reference"


def _run(command: list[str], path: Path) -> None:
    with atomic_path(path) as tmp:
        subprocess.run(command[:-1] + [str(tmp)], check=True, capture_output=True, timeout=60)


def _flite(voice: str, text: str, path: Path) -> None:
    _run(["flite", "-voice", voice, "-t", text, "-o", str(path)], path)


def _festival(voice: str, text: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        txt = Path(scratch) / "text.txt"
        txt.write_text(text)
        _run(["text2wave", "-eval", f"(voice_{voice})", str(txt), "-o", str(path)], path)


def synthesise(out_dir: Path, sentences: int = 4, seed: int = 0) -> Path:
    """Write the reference and non-reference sets; returns `out_dir / 'reference'`."""
    if shutil.which("flite") is None:
        raise BadInput("flite is not installed: `apt-get install flite festival festvox-kdlpc16k sox` (make deps)")
    rng = random.Random(seed)
    jobs = [("reference", f"spk_{v}", _flite, v) for v in FLITE_VOICES]
    if shutil.which("text2wave") and Path("/usr/share/festival/voices/english/ked_diphone").is_dir():
        jobs.append(("non_reference", "spk_ked", _festival, "ked_diphone"))
    for group, speaker, synth, voice in jobs:
        texts = rng.sample(SENTENCES, sentences)
        for index, text in enumerate(texts):
            path = out_dir / group / speaker / f"{index:02d}.wav"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                synth(voice, text, path)
    return out_dir / "reference"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.privacy.test_voices", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write reference/ and non_reference/ into")
    parser.add_argument("--sentences", type=int, default=4, help="utterances per speaker (default 4)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the sentences (default 0)")
    args = parser.parse_args(argv)
    try:
        reference = synthesise(args.out_dir, args.sentences, args.seed)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"reference voices in {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
