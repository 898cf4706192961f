"""The last gate before publishing: a staged release must hold none of the run's private strings.

The config declares which of its fields are private (`pipeline.config.PRIVATE_FIELDS`); the published
view redacts them. This scan is the belt to those braces: it reads every file of the staged release as
a consumer would see its content — Parquet decoded (every string, every key-value metadata entry,
embedded FLAC tags), JSON decoded (so escapes hide nothing), FLAC metadata blocks, any other file as
text — and looks for:

- the values of every private config field (protected names, private paths as written and resolved),
- the reference set's speaker ids and file names (names and stems),

matched case-insensitively where not flanked by a letter or digit (so a hex hash never matches a
numeric file stem by chance). Strings shorter than `MIN_LENGTH` are not searched (too generic to mean
anything: `00.wav`'s stem `00`), except protected names, which are searched from `MIN_NAME_LENGTH`.
A consumer's `verify` cannot do this (it has no private config): the exporter does, and refuses to
publish on any hit. Messages name the file and the field, never the private value itself.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path

MIN_LENGTH = 6
MIN_NAME_LENGTH = 3


LYRIC_MIN_LENGTH = 16  # a shorter lyric line ("la la la") may occur in any text by chance


def private_needles(loaded, reference_files=()) -> dict[str, str]:
    """Lower-cased private string -> what it is (a config field path or a reference-set label).

    `loaded` is the run's LoadedConfig; `reference_files` its ReferenceFile list (speaker, path).
    """
    needles: dict[str, str] = {}

    def add(value: str | Path | None, label: str, minimum: int = MIN_LENGTH) -> None:
        text = str(value).strip() if value is not None else ""
        if len(text) >= minimum:
            needles.setdefault(text.lower(), label)

    for field, values in loaded.config.private_values().items():
        for value in values:
            add(value, field, MIN_NAME_LENGTH if field == "prompts.protected_names" else MIN_LENGTH)
    resolved = {"storage.workspace": loaded.workspace_root, "storage.releases": loaded.releases_root,
                "storage.reference_cache": loaded.reference_cache, "privacy.reference_dir": loaded.reference_dir,
                "privacy.cohort_dir": loaded.cohort_dir, "generation.weights_dir": loaded.weights_dir,
                "prompts.lyrics.file": loaded.lyrics_file, "source.corpus": loaded.corpus,
                "storage.models": loaded.models_root}
    for field, path in resolved.items():
        add(path, f"{field} (resolved path)")
    if loaded.corpus is not None and loaded.corpus.suffix.lower() == ".csv":
        # a corpus manifest's lyrics are private text: no line of them may be released (a folder has none)
        from pipeline.training.corpus import list_corpus

        for file in list_corpus(loaded.corpus):
            for line in file.lyrics.splitlines():
                add(line, "a corpus lyric line", LYRIC_MIN_LENGTH)
    for file in reference_files:
        add(file.speaker, "a reference speaker id")
        add(file.path.name, "a reference file name")
        add(file.path.stem, "a reference file name")
    return needles


def _pattern(needles: dict[str, str]) -> re.Pattern | None:
    if not needles:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True))
    # Not preceded or followed by a letter or digit ([^\W_]): '_', '/', '.', spaces and quotes are boundaries.
    return re.compile(rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE)


def flac_metadata(data: bytes) -> bytes | None:
    """The metadata blocks of a FLAC stream other than STREAMINFO and PADDING (tags, pictures, cue sheets,
    application blocks), concatenated; None if `data` is not FLAC. Audio frames carry no text."""
    from pipeline.export.flac_tags import metadata_blocks

    if not data.startswith(b"fLaC"):
        return None
    blocks, _ = metadata_blocks(data, strict=False)
    return b"\n".join(body for kind, body in blocks if kind not in (0, 1))  # 0 STREAMINFO, 1 PADDING


def _flac_file_metadata(path: Path) -> bytes | None:
    """`flac_metadata` of a file, reading only its metadata blocks (not the audio frames)."""
    from pipeline.export.flac_tags import read_metadata

    with open(path, "rb") as handle:
        metadata = read_metadata(handle)
    return None if metadata is None else flac_metadata(metadata)


def _json_strings(value) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _json_strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)


def _decoded(data: bytes) -> Iterator[str]:
    """`data` as text, and, when it is JSON, every string it holds (escapes undone)."""
    text = data.decode("utf-8", errors="replace")
    yield text
    try:
        yield "\n".join(_json_strings(json.loads(text)))
    except ValueError:
        pass


def _binary_value(data: bytes) -> Iterator[str]:
    tags = flac_metadata(data)
    yield from _decoded(data if tags is None else tags)


def _array_texts(array) -> Iterator[str]:
    import pyarrow as pa

    kind = array.type
    if pa.types.is_struct(kind):
        for i in range(kind.num_fields):
            yield from _array_texts(array.field(i))
    elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        yield from _array_texts(array.flatten())
    elif pa.types.is_map(kind):
        yield from _array_texts(array.keys)
        yield from _array_texts(array.items)
    elif pa.types.is_dictionary(kind):
        yield from _array_texts(array.dictionary)
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        for value in array.to_pylist():
            if value is not None:
                yield from _decoded(value.encode())
    elif pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        for value in array.to_pylist():
            if value is not None:
                yield from _binary_value(value)


def _parquet_texts(path: Path) -> Iterator[str]:
    import pyarrow.parquet as pq

    parquet = pq.ParquetFile(path)
    for key, value in (parquet.metadata.metadata or {}).items():
        yield key.decode("utf-8", errors="replace")
        yield from _decoded(value)
        if key == b"ARROW:schema":
            yield base64.b64decode(value).decode("utf-8", errors="replace")
    yield "\n".join(parquet.schema_arrow.names)
    for batch in parquet.iter_batches(batch_size=256):
        for column in batch.columns:
            yield from _array_texts(column)


def file_texts(path: Path) -> Iterator[str]:
    """What a reader of `path` can see, as text (see the module docstring)."""
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet_texts(path)
        return
    if suffix == ".flac":
        tags = _flac_file_metadata(path)
        if tags is not None:
            yield from _decoded(tags)
            return
    data = path.read_bytes()
    for text in _decoded(data):
        yield text
        if suffix in (".html", ".htm", ".md", ".xml"):
            yield html.unescape(text)


def scan_release(folder: Path, needles: dict[str, str]) -> list[str]:
    """One line per (file, kind of private string) found under `folder`; empty when the folder is clean."""
    pattern = _pattern(needles)
    if pattern is None:
        return []
    hits: list[str] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        labels = sorted({needles.get(m.group(0).lower(), "a private value") for text in file_texts(path) for m in pattern.finditer(text)})
        relative = path.relative_to(folder)
        hits += [f"{relative}: holds a value of {label}" for label in labels]
    return hits
