"""Synthesise test voices with Debian's speech synthesisers: a stand-in for a private reference set.

    python -m pipeline.privacy.test_voices OUT_DIR [--sentences 4] [--seed 0]

writes `OUT_DIR/reference/<speaker_id>/<nn>.wav` (flite voices awb, rms, slt, kal16) and
`OUT_DIR/non_reference/<speaker_id>/<nn>.wav` (festival voices ked, Italian lp and pc, Finnish lj and
mv, Czech ph and krb, Catalan ona, where installed): voices that are *not* in the reference set, for
false-positive checks; with `--cohort`, `OUT_DIR/cohort/` (espeak-ng variants, festival ru and Czech
dita and machac), extra impostor voices (`privacy.cohort_dir`). Sentences are chosen with the seed, so the
same arguments give the same files. Existing complete output is reused.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pipeline.errors import BadInput
from pipeline.files import atomic_path

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
# Voices that are NOT in the reference set (festival voice -> Debian package). Not kal: flite's kal16
# is the same speaker. Non-English voices read the English sentences with their own rules, which
# does not matter for speaker identity.
NON_REFERENCE_VOICES = {  # speaker id -> (festival voice, Debian package)
    "spk_ked": ("ked_diphone", "festvox-kdlpc16k"), "spk_lp": ("lp_diphone", "festvox-italp16k"),
    "spk_pc": ("pc_diphone", "festvox-itapc16k"), "spk_lj": ("suo_fi_lj_diphone", "festvox-suopuhe-lj"),
    "spk_mv": ("hy_fi_mv_diphone", "festvox-suopuhe-mv"), "spk_ph": ("czech_ph", "festvox-czech-ph"),
    "spk_krb": ("czech_krb", "festvox-czech-krb"), "spk_ona": ("upc_ca_ona_hts", "festvox-ca-ona-hts"),
}
# Extra impostor voices (privacy.cohort_dir) for experiments: espeak-ng voice variants plus festival voices kept apart
# from the non-reference set above, so false-positive figures are never measured on cohort voices.
COHORT_ESPEAK = ("en+m1", "en+m3", "en+f1", "en+f3", "en-us+m2", "en-us+f2", "en+Andy", "en+belinda")
COHORT_FESTIVAL = {"fest_ru": ("msu_ru_nsh_clunits", "festvox-ru"), "fest_dita": ("czech_dita", "festvox-czech-dita"),
                   "fest_machac": ("czech_machac", "festvox-czech-machac")}
DEBIAN_PACKAGES = sorted({"flite", "festival", "festival-czech", "festival-ca", "espeak-ng"}
                         | {package for _, package in [*NON_REFERENCE_VOICES.values(), *COHORT_FESTIVAL.values()]})
SENTENCES_PER_OUTSIDER = 6


def _run(command: list[str], path: Path) -> None:
    with atomic_path(path) as tmp:
        subprocess.run([str(tmp) if part == str(path) else part for part in command], check=True,
                       capture_output=True, timeout=60)


def _flite(voice: str, text: str, path: Path) -> None:
    _run(["flite", "-voice", voice, "-t", text, "-o", str(path)], path)


def _festival(voice: str, text: str, path: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        txt = Path(scratch) / "text.txt"
        txt.write_text(text)
        _run(["text2wave", "-eval", f"(voice_{voice})", str(txt), "-o", str(path)], path)


def _espeak(voice: str, text: str, path: Path, data: Path | None = None) -> None:
    _run(["espeak-ng", *([f"--path={data}"] if data else []), "-v", voice, "-w", str(path), text], path)


MAX_MADE_VARIANTS = 100


def espeak_data(variants: dict[str, str], folder: Path) -> Path:
    """A folder for `espeak-ng --path` whose data is the installed espeak-ng's (linked, not copied) and whose voice
    variants are `variants` (name -> the text of an espeak-ng variant file) instead of the installed ones, so that
    `-v en+<name>` reads with a voice no installed variant is. espeak-ng lists at most 349 languages and variants,
    so at most `MAX_MADE_VARIANTS` go in one folder. Written once per set of variants; returns `folder`."""
    if len(variants) > MAX_MADE_VARIANTS:
        raise ValueError(f"{len(variants)} variants: espeak-ng reads at most {MAX_MADE_VARIANTS} beside its "
                         "languages from one data folder; split them over several folders")
    installed = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True).stdout
    source = Path(installed.rsplit("Data at:", 1)[1].strip())
    for name in variants:
        if (source / "voices" / "!v" / name).exists():
            raise ValueError(f"variant {name!r} is an installed espeak-ng variant's name: pick another")
    data = folder / "espeak-ng-data"
    variant_dir = data / "voices" / "!v"
    # the variant files are written last, so a folder holding them all was linked in full
    if all((variant_dir / name).is_file() and (variant_dir / name).read_text() == text
           for name, text in variants.items()):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    variant_dir.mkdir(parents=True)
    for entry in source.iterdir():
        if entry.name != "voices":
            (data / entry.name).symlink_to(entry)
    for entry in (source / "voices").iterdir():
        if entry.name != "!v":
            (data / "voices" / entry.name).symlink_to(entry)
    for name, text in variants.items():
        (variant_dir / name).write_text(text)
    return folder


def _festival_voice_installed(voice: str) -> bool:
    return shutil.which("text2wave") is not None and any(Path("/usr/share/festival/voices").glob(f"*/{voice}"))


def synthesise(out_dir: Path, sentences: int = 12, seed: int = 0, cohort: bool = False) -> Path:
    """Write reference/ (flite awb, rms, slt, kal16; `sentences` each) and non_reference/ (every installed
    festival voice of NON_REFERENCE_VOICES), and cohort/ if asked; returns `out_dir / 'reference'`."""
    if shutil.which("flite") is None:
        raise BadInput("flite is not installed: `apt-get install flite festival festvox-kdlpc16k sox` (make deps)")
    rng = random.Random(seed)
    jobs = [("reference", f"spk_{v}", _flite, v, sentences) for v in FLITE_VOICES]
    jobs += [("non_reference", speaker, _festival, voice, SENTENCES_PER_OUTSIDER)
             for speaker, (voice, _) in NON_REFERENCE_VOICES.items() if _festival_voice_installed(voice)]
    if cohort:
        if shutil.which("espeak-ng"):
            jobs += [("cohort", f"esp_{v.replace('+', '_').replace('-', '_')}", _espeak, v, SENTENCES_PER_OUTSIDER)
                     for v in COHORT_ESPEAK]
        jobs += [("cohort", speaker, _festival, voice, SENTENCES_PER_OUTSIDER)
                 for speaker, (voice, _) in COHORT_FESTIVAL.items() if _festival_voice_installed(voice)]
    files = []
    for group, speaker, synth, voice, count in jobs:
        texts = rng.sample(SENTENCES, count)
        files += [(synth, voice, text, out_dir / group / speaker / f"{index:02d}.wav")
                  for index, text in enumerate(texts)]
    synthesise_files(files)
    return out_dir / "reference"


def synthesise_files(files: list[tuple[Callable[[str, str, Path], None], str, str, Path]]) -> None:
    """Write each (synthesiser, voice, text, path) not written yet, one synthesiser process per core at a time
    (each file is written atomically and depends on nothing else, so the order does not matter)."""
    pending = [job for job in files if not job[3].is_file()]
    for *_, path in pending:
        path.parent.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        for _ in pool.map(lambda job: job[0](job[1], job[2], job[3]), pending):
            pass  # re-raises the first failure


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.privacy.test_voices", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write reference/ and non_reference/ into")
    parser.add_argument("--sentences", type=int, default=12, help="utterances per reference speaker (default 12)")
    parser.add_argument("--cohort", action="store_true", help="also write cohort/: extra impostor voices (privacy.cohort_dir)")
    parser.add_argument("--seed", type=int, default=0, help="chooses the sentences (default 0)")
    args = parser.parse_args(argv)
    try:
        reference = synthesise(args.out_dir, args.sentences, args.seed, args.cohort)
    except BadInput as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"reference voices in {reference}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
