"""Hugging Face `datasets` (current 5.x, in a consumer's own environment) loads a release."""

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pandas as pd
import pytest

# `make test` names it; a plain `pytest` in the repository finds the one `make consumer-env` made
CONSUMER_PYTHON = os.environ.get("SYNTHAUDIO_CONSUMER_PYTHON") or str(
    Path(__file__).resolve().parents[2] / ".venv-consumer" / "bin" / "python")

LOAD = textwrap.dedent("""
    import io, json, sys
    from pathlib import Path
    import soundfile as sf
    from datasets import Audio, load_dataset
    release = Path(sys.argv[1])
    dsets = load_dataset("parquet", data_dir=str(release / "data"))
    out = {"version": __import__("datasets").__version__, "splits": {}, "audio_feature": {}, "frames": {}}
    for split, dset in dsets.items():
        out["splits"][split] = dset.num_rows
        out["audio_feature"][split] = type(dset.features["audio"]).__name__
        for row in dset.cast_column("audio", Audio(decode=False)):
            audio = row["audio"]
            source = io.BytesIO(audio["bytes"]) if audio["bytes"] else release / audio["path"]
            data, rate = sf.read(source)
            out["frames"][row["clip_id"]] = [len(data), rate]
    print(json.dumps(out))
""")


@pytest.mark.skipif(not Path(CONSUMER_PYTHON).is_file(), reason="no consumer env: run `make consumer-env` (make test does)")
def test_hugging_face_datasets_loads_the_release_with_an_audio_column(cli_release):
    result = subprocess.run([CONSUMER_PYTHON, "-c", LOAD, str(cli_release)], capture_output=True, text=True,
                            timeout=600, env={**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert int(loaded["version"].split(".")[0]) >= 5
    ours = pd.read_parquet(cli_release / "data")
    assert loaded["splits"] == ours.split.value_counts().to_dict()
    assert set(loaded["audio_feature"].values()) == {"Audio"}
    assert loaded["frames"] == {row.clip_id: [row.num_samples, 44_100] for row in ours.itertuples()}
