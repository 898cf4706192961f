"""Vorbis comments in FLAC files: every released clip says, machine-readably, that it is AI-generated.

Transparency rules for generated audio (e.g. the EU AI Act's Article 50) ask that synthetic audio be marked in a
machine-readable way. Each released FLAC carries SYNTHETIC tags (AI_GENERATED, the IPTC digital source type
"trainedAlgorithmicMedia", the generator and model hash, the dataset, version and clip id) beside the Parquet
column `ai_generated` and the dataset card; `verify` checks them.

FLAC metadata (https://xiph.org/flac/format.html): "fLaC", then blocks, each with a 4-byte header (last-block
flag, 7-bit type, 24-bit big-endian length); type 4 is VORBIS_COMMENT: a little-endian length-prefixed vendor
string, a comment count and length-prefixed UTF-8 "KEY=value" comments. Written here in a few lines (the
libraries that write arbitrary comments are GPL); the tests read them back with mutagen.
"""

from __future__ import annotations

import struct

VORBIS_COMMENT = 4
IPTC_TRAINED_ALGORITHMIC_MEDIA = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def synthetic_tags(*, dataset: str, version: str, clip_id: str, model_preset: str, model_sha256: str | None,
                   generator: str) -> dict[str, str]:
    """The tags of one released clip."""
    return {
        "AI_GENERATED": "true",
        "DIGITAL_SOURCE_TYPE": IPTC_TRAINED_ALGORITHMIC_MEDIA,
        "COMMENT": "AI-generated (synthetic) audio, sampled from a Jukebox model; not a recording",
        "GENERATOR": generator,
        "MODEL": f"jukebox {model_preset}",
        "MODEL_SHA256": model_sha256 or "unknown",
        "DATASET": dataset,
        "DATASET_VERSION": version,
        "CLIP_ID": clip_id,
    }


def metadata_blocks(data: bytes, strict: bool = True) -> tuple[list[tuple[int, bytes]], int]:
    """([(type, body)], offset of the audio frames) of a FLAC stream's metadata (`data` may stop after it).
    `strict`: a stream that is not FLAC or is cut short inside its metadata raises ValueError; otherwise the blocks
    found so far are returned (the last one possibly cut), as a scanner of untrusted files wants them."""
    if data[:4] != b"fLaC":
        raise ValueError("not a FLAC stream (no fLaC marker)")
    blocks, offset, last = [], 4, False
    while not last:
        if offset + 4 > len(data):
            if strict:
                raise ValueError("FLAC metadata ends early")
            break
        header = data[offset]
        last, kind = bool(header & 0x80), header & 0x7F
        length = int.from_bytes(data[offset + 1: offset + 4], "big")
        if strict and offset + 4 + length > len(data):
            raise ValueError("FLAC metadata ends early")
        blocks.append((kind, data[offset + 4: offset + 4 + length]))
        offset += 4 + length
    return blocks, offset


def read_metadata(handle) -> bytes | None:
    """The marker and metadata blocks of the FLAC file open in `handle`, read from its start without the audio
    frames (the handle is left where they begin); None when it is not FLAC. A file cut short gives what it has."""
    data = bytearray(handle.read(4))
    if data != b"fLaC":
        return None
    while header := handle.read(4):
        data += header
        data += handle.read(int.from_bytes(header[1:4], "big"))
        if header[0] & 0x80:  # the last metadata block
            break
    return bytes(data)


def _comment_body(vendor: bytes, tags: dict[str, str]) -> bytes:
    comments = [f"{key}={value}".encode() for key, value in tags.items()]
    return b"".join([struct.pack("<I", len(vendor)), vendor, struct.pack("<I", len(comments)),
                     *(struct.pack("<I", len(c)) + c for c in comments)])


def write_tags(data: bytes, tags: dict[str, str]) -> bytes:
    """The FLAC file `data` with its Vorbis comments replaced by `tags` (the encoder's vendor string kept, the
    audio frames untouched). Deterministic: the same input and tags give the same bytes."""
    blocks, audio_at = metadata_blocks(data)
    vendor = b"synthaudio"
    for kind, body in blocks:
        if kind == VORBIS_COMMENT:
            vendor = body[4: 4 + struct.unpack("<I", body[:4])[0]]
    kept = [(kind, body) for kind, body in blocks if kind != VORBIS_COMMENT]
    kept.insert(1, (VORBIS_COMMENT, _comment_body(vendor, tags)))  # STREAMINFO stays first, as FLAC requires
    out = [b"fLaC"]
    for number, (kind, body) in enumerate(kept):
        last = 0x80 if number == len(kept) - 1 else 0
        out += [bytes([last | kind]), len(body).to_bytes(3, "big"), body]
    return b"".join(out) + data[audio_at:]


def read_tags(data: bytes) -> dict[str, str]:
    """KEY -> value of a FLAC file's Vorbis comments (keys upper-cased; the last value of a repeated key).
    Raises ValueError for a stream whose metadata is not FLAC or is cut short."""
    tags = {}
    for kind, body in metadata_blocks(data)[0]:
        if kind != VORBIS_COMMENT:
            continue
        try:
            at = 4 + struct.unpack_from("<I", body, 0)[0]
            (count,) = struct.unpack_from("<I", body, at)
            at += 4
            for _ in range(count):
                (length,) = struct.unpack_from("<I", body, at)
                key, _, value = body[at + 4: at + 4 + length].decode("utf-8").partition("=")
                tags[key.upper()] = value
                at += 4 + length
        except (struct.error, UnicodeDecodeError) as exc:
            raise ValueError(f"malformed Vorbis comment block ({exc})") from exc
    return tags
