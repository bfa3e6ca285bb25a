"""Read a prompt's musical attributes back from its words: the inverse of :mod:`.captions`.

Why: prompt adherence scores audio against the attributes its prompt asked for. The corpus
knows them for its own clips (manifest fields); a user's free prompt ("a slow, dark cello
drone in D minor") only has words. Reading them with the vocabulary the corpus captions are
written in lets the ``adherence`` metric score any prompt, so ``--rerank`` can keep the
candidate that follows the prompt best even with a text-only conditioner (no audio-text space
to compare in). Only what the prompt states is returned: an attribute it does not mention is
not checked. The reader is deliberately literal (no synonyms beyond the caption vocabulary
and a few plain words), so what it reads is predictable.
"""

from __future__ import annotations

import re
from typing import Any

from cadenza.plugins.workflows.corpus.captions import (ACCOMPANIMENT_INSTRUMENT_WORDS, ACCOMPANIMENT_WORDS, DRUM_NP,
                                                       DRUM_WITH, DYNAMICS_PHRASES, DYNAMICS_WORDS, INSTRUMENT_WORDS,
                                                       PROGRAM_WORDS, REGISTER_PHRASES, REGISTER_WORDS, TEMPO_NOUNS,
                                                       TEMPO_WORDS)
from cadenza.plugins.workflows.corpus.compose import INSTRUMENTS, TEMPO_CLASSES

# Plain words a user writes that the caption vocabulary lacks, per attribute value.
EXTRA_WORDS: dict[str, dict[str, tuple[str, ...]]] = {
    "tempo_class": {"slow": ("very slow", "slowly", "adagio", "largo"), "medium": ("medium", "andante", "moderato"),
                    "fast": ("very fast", "upbeat", "allegro", "presto", "energetic")},
    "dynamics": {"soft": ("softly", "quietly"), "loud": ("loudly",)},
    "drums": {"none": ("no drum", "without drum", "without percussion"),
              "yes": ("drums", "drum", "percussion", "drum kit", "beat")},
}
# A BPM stated as a number: "120 BPM", "at 96 bpm", "72 beats per minute".
_BPM = re.compile(r"\b(\d{2,3})\s*(?:bpm|beats per minute)\b", re.IGNORECASE)
# A key: an upper-case tonic (so the article "a" is never read as A), an accidental, then the mode.
_KEY = re.compile(r"\b([A-G])(#|b|♯|♭|\s+sharp|-sharp|\s+flat|-flat)?(?:[\s-]+(major|minor))\b")
_ACCIDENTAL = {"#": "#", "♯": "#", "sharp": "#", "b": "b", "♭": "b", "flat": "b"}
_MODE = re.compile(r"\b(major|minor)\b", re.IGNORECASE)
# The lead's family for each General MIDI program's own words ("jazz guitar" -> electric guitar).
PROGRAM_FAMILY = {program: family for family, (programs, _) in INSTRUMENTS.items() for program, _ in programs}
FAMILY_WORDS = {family: tuple(word for program, words in PROGRAM_WORDS.items() if PROGRAM_FAMILY.get(program) == family
                              for word in words) for family in INSTRUMENTS}
# Accompaniment phrases ("backed by held string chords") name a second instrument: blanked before the lead is read.
_ACCOMPANIMENT = re.compile("|".join(
    re.escape(phrase.lower()).replace(r"\{acc\}", "(?:" + "|".join(map(re.escape, ACCOMPANIMENT_INSTRUMENT_WORDS.values()))
                                      + ")").replace(r"\ ", r"\s+")
    for phrases in ACCOMPANIMENT_WORDS.values() for phrase in phrases))


def _phrases(*tables: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """(phrase, value) pairs, longest phrase first, so "electric piano" wins over "piano"."""
    pairs = {(phrase.lower(), value) for table in tables for value, phrases in table.items() for phrase in phrases}
    return sorted(pairs, key=lambda pair: (-len(pair[0]), pair))


def _pattern(phrase: str) -> re.Pattern:
    return re.compile(r"(?<![\w-])" + re.escape(phrase).replace(r"\ ", r"[\s-]+") + r"(?![\w-])")


_TABLES: dict[str, list[tuple[re.Pattern, str]]] = {
    name: [(_pattern(phrase), value) for phrase, value in _phrases(*tables)]
    for name, tables in {
        # phrases first within each attribute (longest first), so "at a low volume" is dynamics, not register
        "dynamics": (DYNAMICS_PHRASES, DYNAMICS_WORDS, EXTRA_WORDS["dynamics"]),
        "register": (REGISTER_PHRASES, REGISTER_WORDS),
        "tempo_class": (TEMPO_WORDS, TEMPO_NOUNS, EXTRA_WORDS["tempo_class"]),
        "drums": (DRUM_WITH, DRUM_NP, EXTRA_WORDS["drums"]),
        "instrument": (INSTRUMENT_WORDS, FAMILY_WORDS),
    }.items()
}


def _first_match(text: str, table: list[tuple[re.Pattern, str]]) -> tuple[str | None, str]:
    """The value of the phrase found earliest in ``text`` (ties: the longer phrase), and ``text``
    with every matched phrase blanked out, so later attributes do not read the same words."""
    found: list[tuple[int, int, str, re.Match]] = []
    for pattern, value in table:
        for match in pattern.finditer(text):
            found.append((match.start(), -(match.end() - match.start()), value, match))
    if not found:
        return None, text
    found.sort(key=lambda item: item[:2])
    for _, _, _, match in found:
        text = text[:match.start()] + " " * (match.end() - match.start()) + text[match.end():]
    return found[0][2], text


def read_caption(prompt: str) -> dict[str, Any]:
    """The attributes ``prompt`` states, as corpus labels: ``tempo_class`` (slow/medium/fast, from
    words or a stated BPM), ``key`` (tonic, e.g. "F#"), ``mode``, ``register``, ``dynamics``,
    ``drums`` ("none", a corpus style, or "yes"), ``instrument`` (the corpus family)."""
    out: dict[str, Any] = {}
    key = _KEY.search(prompt)
    if key and key.start() == 0 and key.group(1) == "A" and not key.group(2):
        key = None  # "A major-key song ...": the sentence's article, not the tonic
    if key:
        out["key"] = key.group(1) + _ACCIDENTAL.get((key.group(2) or "").strip(" -"), "")
        out["mode"] = key.group(3).lower()
    elif mode := _MODE.search(prompt):
        out["mode"] = mode.group(1).lower()
    # "-led" as a word of its own, so "vibraphone-led" names the vibraphone
    text = _ACCOMPANIMENT.sub(" ", _KEY.sub(" ", prompt).lower()).replace("-led", " led")
    bpm = _BPM.search(text)
    if bpm:
        out["bpm"] = int(bpm.group(1))
        out["tempo_class"] = min(TEMPO_CLASSES, key=lambda c: min(abs(out["bpm"] - edge) for edge in TEMPO_CLASSES[c]))
        text = _BPM.sub(" ", text)
    for name in ("dynamics", "register", "tempo_class", "drums", "instrument"):
        value, text = _first_match(text, _TABLES[name])
        if name == "drums" and value is not None and any(v == "none" and p.search(prompt.lower()) for p, v in _TABLES[name]):
            value = "none"  # "drums: no drums" asks for none, whatever word came first
        if value is not None and name not in out:
            out[name] = value
    return out
