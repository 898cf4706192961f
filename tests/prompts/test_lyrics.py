import pytest

from pipeline.config import LyricsConfig
from pipeline.errors import BadInput
from pipeline.generation.presets import lyric_vocabulary
from pipeline.prompts.lyrics import LyricsReport, check_artists, fit_to_vocabulary, name_pattern, prepare_lyrics
from pipeline.prompts.stage import plan
from pipeline.runner import make_context

VOCAB = lyric_vocabulary("tiny", None)


@pytest.mark.parametrize("line, reason", [
    ("call jane doe tonight", "protected name"),
    ("Jane-Doe sang it", "protected name"),
    ("write to me at someone@example.org", "e-mail address"),
    ("ring +44 20 7946 0958 any time", "phone number"),
    ("dial (555) 123-4567", "phone number"),
])
def test_sensitive_lines_are_refused_with_their_source(line, reason):
    lyrics = LyricsConfig(source="lines", lines=["a fine line", line])
    with pytest.raises(BadInput, match=rf"prompts.lyrics.lines\[1\]: lyric line holds a {reason}"):
        prepare_lyrics(lyrics, None, ["jane_doe"], VOCAB)


def test_sensitive_lines_can_be_dropped_and_counted():
    lyrics = LyricsConfig(source="lines", on_sensitive="drop",
                          lines=["a fine line", "mail a@b.co", "jane doe", "1999 was a year", "ok"])
    kept, report = prepare_lyrics(lyrics, None, ["jane_doe"], VOCAB)
    assert kept == ["a fine line", "1999 was a year", "ok"]  # four digits are not a phone number
    assert report.dropped_sensitive == 2
    assert report.as_dict()["dropped_by_reason"] == {"e-mail address": 1, "protected name": 1}


def test_names_match_as_words_only():
    pattern = name_pattern("ann")
    assert pattern.search("Ann came home") and not pattern.search("annual planning")


def test_protected_artist_is_refused():
    names = ["Aurora Lane"]
    with pytest.raises(BadInput, match=r"prompts.artists: 'aurora_lane' names a protected person"):
        check_artists(["cinder_kid", "aurora_lane"], [name_pattern(n) for n in names], names)


def test_reference_speakers_are_protected_artists(small_config, reference_dir, tmp_path):
    refs = tmp_path / "refs"
    import shutil

    shutil.copytree(reference_dir, refs)
    shutil.copytree(refs / "spk_awb", refs / "cinder_kid")
    ctx = make_context(small_config(**{"privacy.reference_dir": str(refs)}), "2026-01-01")
    with pytest.raises(BadInput, match="'cinder_kid' names a protected person"):
        plan(ctx)


def test_a_reference_manifests_speakers_are_protected_artists(small_config, reference_dir, tmp_path):
    """A reference set given as a CSV manifest (speaker_id,path) protects its speaker ids as a folder's do (plan
    listed folder names and failed on a manifest)."""
    wav = next((reference_dir / "spk_awb").glob("*.wav"))
    manifest = tmp_path / "refs.csv"
    manifest.write_text(f"speaker_id,path\ncinder_kid,{wav}\n")
    ctx = make_context(small_config(**{"privacy.reference_dir": str(manifest)}), "2026-01-01")
    with pytest.raises(BadInput, match="'cinder_kid' names a protected person"):
        plan(ctx)


def test_non_ascii_policies():
    report = LyricsReport()
    assert fit_to_vocabulary("café naïve", VOCAB, "transliterate", "x", report) == "cafe naive"
    assert fit_to_vocabulary("北京 night", VOCAB, "transliterate", "x", report) == "Bei Jing night"
    assert report.transliterated_chars == 4
    assert fit_to_vocabulary("北京 night", VOCAB, "drop", "x", report) == "night"
    with pytest.raises(BadInput, match=r"line 3: character '北' \(U\+5317\) is not in the model's lyric vocabulary"):
        fit_to_vocabulary("北京", VOCAB, "refuse", "line 3", report)


def test_templates_expand_every_slot_combination():
    lyrics = LyricsConfig(source="templates", templates=["hold on to the {time}", "{who} rides {time}"],
                          slots={"time": ["morning", "night"], "who": ["she", "he"]})
    kept, report = prepare_lyrics(lyrics, None, [], VOCAB)
    assert sorted(kept) == sorted(["hold on to the morning", "hold on to the night", "she rides morning",
                                   "she rides night", "he rides morning", "he rides night"])


def test_template_with_undefined_slot_is_a_config_error():
    with pytest.raises(ValueError, match=r"uses slot \{place\}"):
        LyricsConfig(source="templates", templates=["in {place}"], slots={})


def test_lyrics_file_lines_name_file_and_line(tmp_path):
    path = tmp_path / "lyrics.txt"
    path.write_text("first line\n\nsecond line with me@example.com\n", encoding="utf-8")
    with pytest.raises(BadInput, match=rf"{path}:3: lyric line holds a e-mail address"):
        prepare_lyrics(LyricsConfig(source="file", file=str(path)), path, [], VOCAB)


def test_instrumental_has_no_lines():
    assert prepare_lyrics(LyricsConfig(), None, [], VOCAB)[0] == []
