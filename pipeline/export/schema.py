"""The Arrow schema of a release's Parquet rows, declared once (schemas/release.arrow.json pins it).

`audio` uses the Hugging Face Audio storage type `struct<bytes: binary, path: string>`: `path` is
relative to the release folder and `bytes` is null, unless the config embeds the FLAC bytes.
Nothing here describes reference speakers or per-clip similarity scores.
"""

from __future__ import annotations

import json

import pyarrow as pa

from pipeline.features.extract import FEATURE_COLUMNS, FEATURE_SCHEMA

AUDIO_STORAGE_TYPE = pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])

# name -> (Arrow type, unit, meaning); features are appended from FEATURE_COLUMNS
BASE_COLUMNS: dict[str, tuple[pa.DataType, str, str]] = {
    "clip_id": (pa.string(), "", "stable id: <dataset>-<version>-<index>"),
    "ai_generated": (pa.bool_(), "flag", "always true: the clip is AI-generated (synthetic) audio, not a recording; "
                                         "its FLAC's Vorbis comments say so too (AI_GENERATED, DIGITAL_SOURCE_TYPE)"),
    "split": (pa.string(), "", "train, validation or test; derived from clip_id, stable as the dataset grows"),
    "caption": (pa.string(), "", "human-readable description of the prompt"),
    "genre": (pa.string(), "", "Jukebox genre token the clip was conditioned on"),
    "artist": (pa.string(), "", "Jukebox artist style token the clip was conditioned on"),
    "lyrics": (pa.string(), "", "lyrics the clip was conditioned on (empty: instrumental)"),
    "vocals": (pa.string(), "", "'with sung lyrics' or 'instrumental' (caption field)"),
    "requested_duration_s": (pa.float64(), "s", "duration asked for in the prompt"),
    "model_preset": (pa.string(), "", "model preset that generated the clip"),
    "model_weights_sha256": (pa.string(), "", "sha256 identifying the model weights"),
    "levels_sampled": (pa.int64(), "", "Jukebox prior levels sampled (3 = top, middle and bottom)"),
    "temperature": (pa.float64(), "", "sampling temperature of the top level, as sampled: a regenerated clip's is "
                                      "raised by privacy.regenerate_temperature_step per regeneration"),
    "sampling_seed": (pa.int64(), "", "seed of the clip's sampling batch"),
    "generation_mode": (pa.string(), "", "prompt (new audio from the prompt), continue (a continuation of a private "
                                         "corpus clip, its prime cut) or rerender (a corpus clip's top-level codes "
                                         "with the finer levels sampled anew); nothing says which clip"),
    "regenerations": (pa.int64(), "", "times the clip was sampled again after a gate rejected it (0: first sample); "
                                      "each time hotter, and a corpus-derived clip keeps less of its source"),
    "num_samples": (pa.int64(), "samples", "audio length in samples"),
    "leak_check": (pa.string(), "", "speaker-similarity leak check verdict; always 'pass' in a release"),
    "leak_check_no_voice": (pa.bool_(), "flag", "true when the leak check found no voiced speech in the clip"),
}


_HF_VALUE_TYPES = {"string": "string", "double": "float64", "int64": "int64", "bool": "bool"}
# The release layout's version, in every manifest (`schema_version`). 1: releases made before the synthetic label
# (no `ai_generated` column, no FLAC tags; a manifest without the key); 2: the label. `verify` checks a release
# against the layout of its own version, so older releases still verify.
RELEASE_SCHEMA_VERSION = 2
ADDED_IN = {"ai_generated": 2}


def release_schema(version: int = RELEASE_SCHEMA_VERSION) -> pa.Schema:
    """Arrow schema of a release row (of layout `version`), with the Hugging Face `datasets` features in its
    metadata, so `load_dataset("parquet", ...)` types `audio` as an Audio column."""
    # Nullable fields, as `datasets` declares them: it only trusts the metadata's features when the
    # Parquet field equals the one it would build (nullability included). No value is ever null.
    fields = [pa.field(name, dtype) for name, (dtype, _, _) in BASE_COLUMNS.items() if ADDED_IN.get(name, 1) <= version]
    fields += [FEATURE_SCHEMA.field(name).with_nullable(True) for name in FEATURE_COLUMNS]
    fields.append(pa.field("audio", AUDIO_STORAGE_TYPE))
    features = {f.name: {"dtype": _HF_VALUE_TYPES[str(f.type)], "_type": "Value"} for f in fields[:-1]}
    features["audio"] = {"_type": "Audio"}
    metadata = {"huggingface": json.dumps({"info": {"features": features}}, sort_keys=True)}
    return pa.schema(fields, metadata=metadata)


def column_docs() -> list[tuple[str, str, str, str]]:
    """(name, type, unit, meaning) of every release column, for the dataset card."""
    schema = release_schema()
    docs = [(n, str(schema.field(n).type), unit, meaning) for n, (_, unit, meaning) in BASE_COLUMNS.items()]
    docs += [(n, str(schema.field(n).type), unit, how) for n, (unit, how) in FEATURE_COLUMNS.items()]
    docs.append(("audio", "struct<bytes: binary, path: string>", "FLAC 44.1 kHz mono 16-bit",
                 "Hugging Face Audio storage: path relative to the release (bytes null unless embedded)"))
    return docs


def schema_as_json(schema: pa.Schema) -> list[dict]:
    """A stable JSON description of an Arrow schema, committed under schemas/."""
    fields = [{"name": f.name, "type": str(f.type), "nullable": f.nullable} for f in schema]
    if schema.metadata:
        return {"fields": fields, "metadata": {k.decode(): v.decode() for k, v in schema.metadata.items()}}
    return fields
