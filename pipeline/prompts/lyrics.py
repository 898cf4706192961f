"""Lyric lines for prompts: read from the configured source, screened for people and personal data,
and fitted to the model's lyric vocabulary.

Screening happens before any sampling: a line naming a protected person (the reference set's
speakers plus the config's list), holding an e-mail address or a phone number is refused with an
error that says where it came from, or dropped and counted, as the config says.
"""

from __future__ import annotations

import re
import string
import unicodedata
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

from pipeline.errors import BadInput

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(\.[\w-]+)+")
PHONE = re.compile(r"(?<!\w)\+?\d[\d\s().-]{5,}\d(?!\w)")
MIN_PHONE_DIGITS = 7
MAX_TEMPLATE_EXPANSION = 100_000


@dataclass
class LyricsReport:
    """Counts for the run report (never the dropped text itself)."""

    lines_in: int = 0
    dropped_sensitive: int = 0
    transliterated_chars: int = 0
    dropped_chars: int = 0
    reasons: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"lines_in": self.lines_in, "dropped_sensitive": self.dropped_sensitive,
                "transliterated_chars": self.transliterated_chars, "dropped_chars": self.dropped_chars,
                "dropped_by_reason": dict(sorted(self.reasons.items()))}


def name_pattern(name: str) -> re.Pattern:
    """Matches a person's name as words, whatever separates them: 'jane_doe' ~ 'Jane Doe' ~ 'jane-doe'."""
    words = [w for w in re.split(r"[\W_]+", name.lower()) if w]
    if not words:
        raise BadInput(f"prompts.protected_names: {name!r} holds no letters or digits")
    return re.compile(r"(?<![a-z0-9])" + r"[\W_]+".join(map(re.escape, words)) + r"(?![a-z0-9])", re.IGNORECASE)


def sensitive_reason(text: str, protected: list[re.Pattern]) -> str | None:
    """Why a line may not be used ('protected name', 'e-mail address', 'phone number'), or None."""
    if any(p.search(text) for p in protected):
        return "protected name"
    if EMAIL.search(text):
        return "e-mail address"
    for match in PHONE.finditer(text):
        if sum(c.isdigit() for c in match.group()) >= MIN_PHONE_DIGITS:
            return "phone number"
    return None


def check_artists(artists: list[str], protected: list[re.Pattern], names: list[str]) -> None:
    """No artist token may name a protected person."""
    for artist in artists:
        for pattern, name in zip(protected, names):
            if pattern.search(artist.replace("_", " ")):
                raise BadInput(
                    f"prompts.artists: {artist!r} names a protected person ({name!r} from "
                    "prompts.protected_names or the reference set); remove it from the config"
                )


def _transliterate(char: str) -> str:
    from anyascii import anyascii

    text = anyascii(char)
    # CJK syllables come back glued together ("BeiJing"): keep them apart as words.
    return f" {text} " if text and unicodedata.east_asian_width(char) in ("W", "F") else text


def fit_to_vocabulary(line: str, vocabulary: set[str], policy: str, where: str, report: LyricsReport) -> str:
    """Apply the non-ASCII policy to characters outside the model's lyric vocabulary."""
    out = []
    for char in unicodedata.normalize("NFC", line):
        if char in vocabulary:
            out.append(char)
            continue
        if policy == "refuse":
            raise BadInput(
                f"{where}: character {char!r} (U+{ord(char):04X}) is not in the model's lyric vocabulary; "
                "set prompts.lyrics.non_ascii to transliterate or drop, or edit the line"
            )
        if policy == "transliterate":
            replacement = "".join(c for c in _transliterate(char) if c in vocabulary)
            if replacement.strip():
                report.transliterated_chars += 1
                out.append(replacement)
                continue
        report.dropped_chars += 1
    return re.sub(r" {2,}", " ", "".join(out)).strip()


def _expand_templates(templates: list[str], slots: dict[str, list[str]]) -> list[tuple[str, str]]:
    lines = []
    for t_index, template in enumerate(templates):
        names = sorted({f for _, f, _, _ in string.Formatter().parse(template) if f})
        for values in product(*(slots[n] for n in names)):
            lines.append((f"prompts.lyrics.templates[{t_index}] with {dict(zip(names, values))}",
                          template.format(**dict(zip(names, values)))))
            if len(lines) > MAX_TEMPLATE_EXPANSION:
                raise BadInput(f"prompts.lyrics.templates expand to more than {MAX_TEMPLATE_EXPANSION} lines; "
                               "use fewer slot values")
    return lines


def source_lines(lyrics, lyrics_file: Path | None) -> list[tuple[str, str]]:
    """(where, text) of every configured line, before screening."""
    if lyrics.source == "instrumental":
        return []
    if lyrics.source == "lines":
        return [(f"prompts.lyrics.lines[{i}]", line) for i, line in enumerate(lyrics.lines)]
    if lyrics.source == "file":
        try:
            text = lyrics_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise BadInput(f"prompts.lyrics.file: cannot read {lyrics_file} as UTF-8 text ({exc})") from None
        return [(f"{lyrics_file}:{n}", line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    return _expand_templates(lyrics.templates, lyrics.slots)


def prepare_lyrics(lyrics, lyrics_file: Path | None, protected_names: list[str], vocabulary: set[str]) -> tuple[list[str], LyricsReport]:
    """Screened lines fitted to `vocabulary`, and the counts for the run report."""
    protected = [name_pattern(n) for n in protected_names]
    report = LyricsReport()
    kept = []
    for where, text in source_lines(lyrics, lyrics_file):
        report.lines_in += 1
        reason = sensitive_reason(unicodedata.normalize("NFKC", text), protected)
        if reason:
            if lyrics.on_sensitive == "refuse":
                raise BadInput(
                    f"{where}: lyric line holds a {reason}; remove it, or set prompts.lyrics.on_sensitive: drop "
                    "to skip such lines"
                )
            report.dropped_sensitive += 1
            report.reasons[reason] = report.reasons.get(reason, 0) + 1
            continue
        fitted = fit_to_vocabulary(text, vocabulary, lyrics.non_ascii, where, report)
        if fitted:
            kept.append(fitted)
    if lyrics.source != "instrumental" and not kept:
        raise BadInput("prompts.lyrics: no usable lyric line is left after screening; add lines or use "
                       "source: instrumental")
    return kept, report
