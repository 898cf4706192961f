"""Nothing private reaches a release: the config declares its private fields, the exporter scans before publishing."""

import hashlib
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from pipeline.config import PRIVATE_FIELDS, REDACTED, load_config
from pipeline.errors import PrivateDataInRelease
from pipeline.export.private_scan import flac_metadata, private_needles, scan_release
from pipeline.privacy.reference import list_reference_files
from pipeline.runner import make_context, run_all
from pipeline.testing import sine, tone_voices, write_config

PROTECTED = "Marguerite Okonkwo-Lind"


def test_the_private_fields_are_pinned():
    # A new field that holds a path, a name or a speaker must be declared private here, on purpose.
    assert set(PRIVATE_FIELDS) == {
        "storage.workspace", "storage.releases", "storage.reference_cache", "prompts.lyrics.file",
        "prompts.protected_names", "generation.weights_dir", "privacy.reference_dir", "privacy.cohort_dir",
        "storage.models", "source.corpus", "alerts.email", "alerts.from_email",
    }


def test_public_view_of_a_corpus_build_redacts_the_corpus_and_the_models(tmp_path, reference_dir):
    config = load_config(write_config(tmp_path, reference_dir, corpus=True)).config
    view = config.public_view()
    assert view["source"]["corpus"] == REDACTED and view["storage"]["models"] == REDACTED
    assert view["source"]["holdout_fraction"] == config.source.holdout_fraction  # public settings stay
    assert str(reference_dir) not in json.dumps(view) and str(tmp_path) not in json.dumps(view)
    assert config.private_values()["source.corpus"] == [str(reference_dir)]


def test_public_view_redacts_every_private_value_and_keeps_the_rest(tmp_path, reference_dir, voices_root):
    path = write_config(tmp_path, reference_dir, **{"prompts.protected_names": [PROTECTED],
                                                    "privacy.cohort_dir": str(voices_root / "non_reference")})
    config = load_config(path).config
    view = config.public_view()
    text = json.dumps(view)
    for field in ("prompts.protected_names", "privacy.cohort_dir", "privacy.reference_dir", "storage.workspace"):
        section, *rest = field.split(".")
        value = view[section]
        for part in rest:
            value = value[part]
        assert value == REDACTED, field
    assert PROTECTED not in text and str(voices_root) not in text and str(tmp_path) not in text
    assert view["storage"]["reference_cache"] is None  # unset private values stay visibly unset
    assert view["n_clips"] == config.n_clips and view["prompts"]["genres"] == config.prompts.genres
    # The published hash is of the public view: it cannot confirm a guessed private value.
    assert config.public_fingerprint() == hashlib.sha256(
        json.dumps(view, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert config.public_fingerprint() != config.fingerprint()


def _flac_with_tag(path, tag: str) -> None:
    with sf.SoundFile(path, "w", 44_100, 1, format="FLAC") as handle:
        handle.comment = tag  # a Vorbis comment
        handle.write(sine(440, 0.2))


def test_scan_finds_private_strings_in_every_kind_of_file_and_ignores_chance_matches(tmp_path, reference_dir):
    loaded = load_config(write_config(tmp_path / "cfg", reference_dir, **{"prompts.protected_names": ["José Álvarez"]}))
    files = list_reference_files(reference_dir)
    needles = private_needles(loaded, files)
    speaker = files[0].speaker
    assert len(speaker) >= 6 and speaker.lower() in needles and "josé álvarez" in needles
    release = tmp_path / "release"
    (release / "data").mkdir(parents=True)
    (release / "audio").mkdir()
    # Clean content, including a hash that contains a numeric file stem and the word "reference".
    (release / "README.md").write_text("reference set fingerprint 3f00aa00wav0011 only\n")
    _flac_with_tag(release / "audio" / "clean.flac", "AI-generated")
    table = pa.table({"caption": ["a pop piece"], "n": [1]})
    pq.write_table(table, release / "data" / "train.parquet", compression="zstd")
    assert scan_release(release, needles) == []

    # Each kind of hiding place: JSON escapes, zstd Parquet metadata and values, FLAC tags, HTML entities.
    (release / "manifest.json").write_text(json.dumps({"names": ["JOSÉ ÁLVAREZ"]}))  # ensure_ascii escapes it
    pq.write_table(table.replace_schema_metadata({"notes": f"from {reference_dir}"}),
                   release / "data" / "test.parquet", compression="zstd")
    pq.write_table(pa.table({"audio": pa.array([{"bytes": None, "path": f"x/{files[0].path.name}"}])}),
                   release / "data" / "validation.parquet", compression="zstd")
    _flac_with_tag(release / "audio" / "tagged.flac", f"voice of {speaker}")
    (release / "index.html").write_text(f"<p>{speaker.replace('_', '&#95;')}</p>")
    hits = scan_release(release, needles)
    assert "manifest.json: holds a value of prompts.protected_names" in hits
    assert "data/test.parquet: holds a value of privacy.reference_dir" in hits
    assert "data/validation.parquet: holds a value of a reference file name" in hits
    assert "audio/tagged.flac: holds a value of a reference speaker id" in hits
    assert "index.html: holds a value of a reference speaker id" in hits
    assert not any(PROTECTED in h or speaker in h for h in hits)  # messages never repeat the private value


def test_flac_metadata_reads_tags_not_audio(tmp_path):
    path = tmp_path / "a.flac"
    _flac_with_tag(path, "hello tag")
    blocks = flac_metadata(path.read_bytes())
    assert b"hello tag" in blocks and len(blocks) < 1000
    assert flac_metadata(b"RIFF....WAVE") is None


@pytest.fixture(scope="module")
def private_release(tmp_path_factory, reference_dir, reference_cache, voices_root):
    """A small release built with protected names and a cohort folder set (both private)."""
    folder = tmp_path_factory.mktemp("private_run")
    config = write_config(folder, reference_dir, n_clips=2, n_shards=1, **{
        "prompts.duration_s": 0.5, "storage.reference_cache": str(reference_cache),
        "prompts.protected_names": [PROTECTED], "privacy.cohort_dir": str(voices_root / "non_reference")})
    release = run_all(make_context(config, "2026-02-01", quiet=True), log=lambda *_: None)
    return config, release


def test_a_release_built_with_protected_names_and_a_cohort_holds_neither(private_release, voices_root, reference_dir):
    _, release = private_release
    manifest = json.loads((release / "manifest.json").read_text())
    assert manifest["config"]["prompts"]["protected_names"] == REDACTED
    assert manifest["config"]["privacy"]["cohort_dir"] == REDACTED
    needles = [PROTECTED, PROTECTED.lower(), str(voices_root / "non_reference"), "non_reference",
               str(reference_dir), "reference_voices", *{f.speaker for f in list_reference_files(reference_dir)}]
    for path in (p for p in release.rglob("*") if p.is_file()):
        blob = path.read_bytes()
        texts = [blob.decode("utf-8", "replace")]
        if path.suffix == ".parquet":
            texts.append(json.dumps(pq.read_table(path).drop(["audio"]).to_pylist(), ensure_ascii=False))
            texts.append(str(pq.ParquetFile(path).metadata.metadata))
        for needle in needles:
            assert all(needle not in text for text in texts), f"{path} holds {needle!r}"


def test_export_refuses_to_publish_a_release_that_holds_a_private_string(private_release, tmp_path):
    from pipeline.export.release import export

    config, release = private_release
    copy = tmp_path / "copy"
    shutil.copytree(release.parents[2], copy, symlinks=True)
    text = (copy / config.name).read_text().replace(str(release.parents[2]), str(copy))
    # A careless description names a protected person: a public field carrying a private value.
    (copy / config.name).write_text(text.replace("description: ", f"description: Sung like {PROTECTED}. ", 1))
    ctx = make_context(copy / config.name, "2026-02-02", quiet=True)
    shutil.copytree(copy / "runs" / "default" / "2026-02-01", ctx.root)
    with pytest.raises(PrivateDataInRelease, match=r"README.md: holds a value of prompts.protected_names") as err:
        export(ctx)
    assert PROTECTED not in str(err.value)
    assert not ctx.release_dir.exists() and not list(ctx.release_dir.parent.glob(".staging-*"))
    assert not np.any([p.name == "2026-02-02" for p in ctx.release_dir.parent.iterdir()])


def test_a_corpus_manifests_lyric_lines_are_private_strings(tmp_path):
    tone_voices(tmp_path / "audio", files=1)
    manifest = tmp_path / "corpus.csv"
    manifest.write_text("speaker_id,path,lyrics\n"
                        "p1,audio/spk_alpha/utterance_00.wav,the river knows my mother's name\n"
                        "p2,audio/spk_bravo/utterance_00.wav,la la la\n")
    needles = private_needles(load_config(write_config(tmp_path, manifest, corpus=True)))
    assert needles["the river knows my mother's name"] == "a corpus lyric line"
    assert "la la la" not in needles  # too short to be told apart from chance
