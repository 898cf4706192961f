"""The leak check's embedding caches are keyed by the code that fills them, not only by names."""

from types import SimpleNamespace

import pytest

from pipeline.privacy import reference


@pytest.mark.parametrize("changed", ["transforms.py", "music.py", "encoder.py", "conditions.py"])
def test_changing_the_code_behind_cached_embeddings_changes_their_keys(monkeypatch, tmp_path, changed):
    (tmp_path / "spk").mkdir()
    (tmp_path / "spk" / "a.wav").write_bytes(b"not audio: only its hash is read")
    encoder = SimpleNamespace(version="resemblyzer-test")
    before = (reference.variants_key(encoder), reference.conditions_key(encoder),
              reference.reference_files_fingerprint(tmp_path))
    real = reference.source

    def edited(*modules):  # the same modules, one of them edited
        return real(*modules) + (b"# edited\n" if changed in modules else b"")

    monkeypatch.setattr(reference, "source", edited)
    after = (reference.variants_key(encoder), reference.conditions_key(encoder),
             reference.reference_files_fingerprint(tmp_path))
    assert after[2] != before[2]  # the stage's fingerprint of the index's inputs
    assert (after[0] != before[0]) == (changed in reference.ENROLMENT_CODE)
    assert (after[1] != before[1]) == (changed in reference.CONDITIONS_CODE)
    assert after[0].startswith("resemblyzer-test-") and after[1].startswith("resemblyzer-test-conditions-")
