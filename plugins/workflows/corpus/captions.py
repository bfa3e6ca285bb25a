"""Natural-language captions for ``cadenza corpus`` clips, from their attributes.

A caption is one of many *templates* (different word orders and sentence shapes, each with an
id such as ``t07``) whose slots are filled with synonyms picked at random: "a slow, gentle
piano melody in A minor, no drums", "minor-key piano tune at 70 BPM, quiet, no drums", ...
Every template names the instrument, the tempo (a word or the BPM), the mode (always the
literal word "major" or "minor"), the dynamics and the drums; most also name the tonic and
the register, some the accompaniment. Templates in :data:`TEST_ONLY_TEMPLATES` are used
only for test-split clips, so a model can be scored on phrasings it never saw in training.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

# ------------------------------------------------------------------------ vocabulary

INSTRUMENT_WORDS: dict[str, tuple[str, ...]] = {
    "piano": ("piano", "acoustic piano", "piano"),
    "electric piano": ("electric piano", "e-piano", "electric keys"),
    "organ": ("organ",),
    "acoustic guitar": ("acoustic guitar", "guitar"),
    "electric guitar": ("electric guitar", "clean electric guitar"),
    "strings": ("strings", "string ensemble", "string section"),
    "violin": ("violin", "solo violin", "fiddle"),
    "cello": ("cello", "solo cello"),
    "brass": ("brass", "brass section", "horns"),
    "saxophone": ("saxophone", "sax"),
    "flute": ("flute", "solo flute"),
    "clarinet": ("clarinet",),
    "synth lead": ("synth lead", "synthesizer lead", "lead synth"),
    "vibraphone": ("vibraphone", "vibes"),
    "marimba": ("marimba",),
    "harp": ("harp", "concert harp"),
}
# Words for one General MIDI program, used beside the family's words.
PROGRAM_WORDS: dict[int, tuple[str, ...]] = {
    0: ("grand piano",), 1: ("bright piano",), 4: ("Rhodes-style electric piano",), 5: ("FM electric piano",),
    16: ("drawbar organ", "Hammond-style organ"), 19: ("church organ", "pipe organ"),
    24: ("nylon-string guitar", "classical guitar"), 25: ("steel-string guitar", "steel-string acoustic guitar"),
    26: ("jazz guitar",), 27: ("clean electric guitar",), 48: ("string ensemble",), 49: ("string section",),
    61: ("brass section",), 56: ("trumpet",), 65: ("alto sax", "alto saxophone"), 66: ("tenor sax", "tenor saxophone"),
    80: ("square-wave lead", "chiptune-style square lead"), 81: ("sawtooth lead", "saw synth lead"),
}
NOUNS = ("melody", "tune", "theme", "piece", "line", "track", "clip", "song", "instrumental")
TEMPO_WORDS: dict[str, tuple[str, ...]] = {
    "slow": ("slow", "unhurried", "leisurely", "slow-paced", "relaxed"),
    "medium": ("mid-tempo", "moderate", "moderately paced", "medium-tempo", "steady"),
    "fast": ("fast", "up-tempo", "brisk", "quick", "fast-paced", "lively"),
}
TEMPO_NOUNS: dict[str, tuple[str, ...]] = {  # "at a ... tempo/pace"
    "slow": ("slow", "leisurely", "relaxed", "calm"),
    "medium": ("moderate", "medium", "comfortable", "walking"),
    "fast": ("fast", "quick", "brisk", "rapid"),
}
DYNAMICS_WORDS: dict[str, tuple[str, ...]] = {
    "soft": ("soft", "quiet", "gentle", "delicate", "hushed", "subdued"),
    "loud": ("loud", "powerful", "forceful", "bold", "punchy", "intense"),
}
DYNAMICS_PHRASES: dict[str, tuple[str, ...]] = {
    "soft": ("played softly", "played quietly", "at a low volume", "with a light touch", "kept quiet"),
    "loud": ("played loudly", "played with force", "at full volume", "with a heavy attack", "loud and strong"),
}
REGISTER_WORDS: dict[str, tuple[str, ...]] = {  # adjectives before the instrument
    "low": ("low", "low-register", "deep", "low-pitched"),
    "mid": ("mid-register", "middle-register", "mid-range"),
    "high": ("high", "high-register", "high-pitched", "soaring"),
}
REGISTER_PHRASES: dict[str, tuple[str, ...]] = {
    "low": ("in a low register", "in the lower register", "low in its range", "in its low range"),
    "mid": ("in the middle register", "in a mid register", "in its middle range", "in the mid range"),
    "high": ("in a high register", "in the upper register", "high in its range", "in its high range"),
}
MODE_WORDS: dict[str, tuple[str, ...]] = {  # each contains the literal mode name
    "major": ("major-key", "major", "bright major-key"),
    "minor": ("minor-key", "minor", "dark minor-key"),
}
DRUM_WITH: dict[str, tuple[str, ...]] = {  # phrases after the noun
    "none": ("without drums", "with no drums", "without any percussion", "with no percussion"),
    "rock": ("with a rock beat", "with rock drums", "over a steady rock backbeat"),
    "dance": ("with a four-on-the-floor beat", "with a dance beat", "over a pounding four-on-the-floor kick"),
    "jazz": ("with swinging jazz drums", "over a jazz ride-cymbal groove", "with a swing beat"),
    "latin": ("with a latin groove", "over a bossa-nova beat", "with latin percussion"),
    "hip-hop": ("with a hip-hop beat", "over a laid-back hip-hop groove", "with boom-bap drums"),
}
DRUM_NP: dict[str, tuple[str, ...]] = {  # stand-alone noun phrases
    "none": ("no drums", "no percussion", "drumless"),
    "rock": ("rock drums", "rock beat", "rock backbeat"),
    "dance": ("four-on-the-floor beat", "dance beat", "dance drums"),
    "jazz": ("jazz drums", "swing beat", "swinging ride cymbal"),
    "latin": ("latin groove", "bossa-nova beat", "latin percussion"),
    "hip-hop": ("hip-hop beat", "boom-bap drums", "hip-hop groove"),
}
ACCOMPANIMENT_WORDS: dict[str, tuple[str, ...]] = {
    "chords": ("over sustained {acc} chords", "with {acc} chords underneath", "backed by held {acc} chords"),
    "arpeggio": ("over {acc} arpeggios", "with an arpeggiated {acc} accompaniment", "backed by rippling {acc} arpeggios"),
    "stabs": ("over rhythmic {acc} stabs", "with short {acc} chord stabs", "backed by crisp {acc} chord hits"),
}
ACCOMPANIMENT_INSTRUMENT_WORDS = {
    "piano": "piano", "electric piano": "electric piano", "strings": "string", "synth pad": "synth pad",
    "acoustic guitar": "guitar", "organ": "organ", "harp": "harp",
}
# Tonic names as written in captions: "A", "F#" or "F sharp", "Bb" or "B flat".
_ACCIDENTALS = {"#": (" sharp", "-sharp"), "b": (" flat", "-flat")}

# ------------------------------------------------------------------------ templates
# Slots: inst, noun, tempo (adjective), tempo_phrase, bpm ("72 BPM"), dyn (adjective),
# dyn_phrase, reg (adjective), reg_phrase, key ("A minor"), mode (adjective), drums_with,
# drums (noun phrase), acc (accompaniment phrase). Every template names instrument, tempo,
# mode, dynamics and drums.

TEMPLATES: dict[str, str] = {
    "t00": "a {tempo}, {dyn} {inst} {noun} in {key}, {drums}",
    "t01": "{mode} {inst} {noun} at {bpm}, {dyn}, {drums}",
    "t02": "a {dyn} {reg} {inst} {noun} in {key} {tempo_phrase}, {drums_with}",
    "t03": "{inst}, {key}, {bpm}, {dyn}, {reg_phrase}, {drums}",
    "t04": "{tempo} {key} {noun} on {inst}, {dyn_phrase} {reg_phrase}, {drums}",
    "t05": "a {dyn} {noun} for {reg} {inst} in {key} at {bpm} {drums_with}",
    "t06": "{key} {inst} {noun}, {tempo} and {dyn}, {drums}",
    "t07": "{dyn} {tempo} {mode} {noun} played on {inst} {drums_with}",
    "t08": "an instrumental in {key}: a {reg} {inst} {noun} {tempo_phrase}, {dyn_phrase}, {drums}",
    "t09": "{inst} plays a {tempo} {noun} in {key} {reg_phrase}; {dyn}, {drums}",
    "t10": "{bpm} {mode} {noun}, {dyn} {inst} {reg_phrase}, {drums}",
    "t11": "a {mode} {noun} at {bpm} led by a {dyn} {reg} {inst} {acc}, {drums}",
    "t12": "{tempo}, {dyn} and in {key}: {inst} {noun} {drums_with}",
    "t13": "a {reg} {inst} carries a {dyn}, {tempo} {noun} in {key} {acc}, {drums}",
    "t14": "{dyn} {inst} {noun} in {key} {tempo_phrase} {acc}, {drums}",
    "t15": "{inst} {noun} ({key}, {bpm}, {dyn}, {drums})",
    "t16": "a {tempo} {mode} {inst} {noun} {reg_phrase}, {dyn_phrase}, {drums}",
    "t17": "{key}, {tempo}: a {dyn} {noun} for {inst} {drums_with}",
    "t18": "{inst} in {key} at {bpm}, {reg_phrase}, {dyn_phrase} {drums_with}",
    "t19": "a {dyn}, {tempo} {noun} in {key} featuring {reg} {inst} {acc}; {drums}",
    "t20": "{tempo} {inst} {noun}, {mode}, {dyn}, {drums}",
    "t21": "{inst} line in {key} {tempo_phrase}, {dyn} and {reg}, {drums}",
    "t22": "{dyn} {mode} {inst} {noun} at {bpm} {acc}; {drums}",
    "t23": "a {noun} in {key} for {inst}: {tempo}, {dyn}, {reg_phrase}, {drums}",
    "t24": "{inst}-led {noun} in {key}, {tempo} ({bpm}), {dyn}, {drums}",
    "t25": "a {reg} {inst} plays {dyn} {mode} phrases {tempo_phrase} {drums_with}",
    "t26": "{drums}, {dyn} {inst} {noun} in {key}, {tempo}",
    "t27": "{key} at {bpm}: {dyn} {reg} {inst} {acc}, {drums}",
    "t28": "{tempo} and {dyn} {inst} {noun} in {key}, {reg_phrase}, {drums}",
    "t29": "a {dyn} {noun} in {key} on {reg} {inst}, {tempo_phrase}, {drums}",
    # test-only templates: sentence shapes never seen in train or valid
    "t30": "this {tempo} {noun} features a {dyn} {inst} {reg_phrase}, written in {key}, {drums_with}",
    "t31": "imagine a {dyn} {inst} playing a {mode} {noun} at roughly {bpm}, {drums}",
    "t32": "{bpm} | {key} | {inst} | {dyn} | {drums}",
    "t33": "the {inst} takes the lead in a {tempo}, {dyn} {noun} in {key} {acc}; {drums}",
    "t34": "music for {inst} in {key}, {dyn_phrase} {tempo_phrase}, {drums_with}",
    "t35": "here a {reg} {inst} sings out a {dyn} {mode} {noun} {tempo_phrase}, {drums}",
    "t36": "{dyn} and {tempo}, this {key} {noun} puts the {inst} up front {drums_with}",
    "t37": "instrumentation: {inst}; key: {key}; tempo: {bpm}; dynamics: {dyn}; drums: {drums}",
}
TEST_ONLY_TEMPLATES = ("t30", "t31", "t32", "t33", "t34", "t35", "t36", "t37")
SHARED_TEMPLATES = tuple(t for t in TEMPLATES if t not in TEST_ONLY_TEMPLATES)

_SLOT = re.compile(r"\{(\w+)\}")
# "a" before a vowel sound: vowels, the letters A, E, F as key names, and 8x/11/18 as numbers.
_ARTICLE = re.compile(r"\b([Aa]) (?=[aeiouAEIOU]|[AEF](?:[#bM\- ,:]|$)|(?:8\d|11|18)\b)")


def fix_articles(text: str) -> str:
    """"a" -> "an" before a vowel sound: "an up-tempo", "an A minor", "an F# major", "an 80 BPM"."""
    return _ARTICLE.sub(lambda m: m.group(1) + "n ", text)


def instrument_words(instrument: str, program: int) -> tuple[str, ...]:
    return INSTRUMENT_WORDS[instrument] + PROGRAM_WORDS.get(program, ())


def key_names(key: str, mode: str) -> tuple[str, ...]:
    """Ways to write the key, e.g. ("F# minor", "F sharp minor", "F-sharp minor"); "A minor", "A-minor"."""
    names = [f"{key} {mode}"]
    if len(key) == 2:
        for spelled in _ACCIDENTALS[key[1]]:
            names.append(f"{key[0]}{spelled} {mode}")
    if len(key) == 1:
        names.append(f"{key}-{mode}")
    return tuple(names)


def _pick(rng: np.random.Generator, options: tuple[str, ...]) -> str:
    return options[int(rng.integers(len(options)))]


def fill(template_id: str, attributes: dict[str, Any], rng: np.random.Generator) -> str:
    """The caption of ``template_id`` for ``attributes``, synonyms drawn from ``rng``."""
    a = attributes
    bpm_style = _pick(rng, ("{} BPM", "{} bpm", "{} beats per minute", "{} BPM"))

    def slot(name: str) -> str:
        if name == "inst":
            return _pick(rng, instrument_words(a["instrument"], a["program"]))
        if name == "noun":
            return _pick(rng, NOUNS)
        if name == "tempo":
            return _pick(rng, TEMPO_WORDS[a["tempo_class"]])
        if name == "tempo_phrase":
            choice = int(rng.integers(4))
            if choice == 0:
                return f"at {bpm_style.format(a['bpm'])}"
            if choice == 1:
                return f"at a {_pick(rng, TEMPO_WORDS[a['tempo_class']])} {a['bpm']} BPM"
            return f"at a {_pick(rng, TEMPO_NOUNS[a['tempo_class']])} {_pick(rng, ('tempo', 'pace'))}"
        if name == "bpm":
            return bpm_style.format(a["bpm"])
        if name == "dyn":
            return _pick(rng, DYNAMICS_WORDS[a["dynamics"]])
        if name == "dyn_phrase":
            return _pick(rng, DYNAMICS_PHRASES[a["dynamics"]])
        if name == "reg":
            return _pick(rng, REGISTER_WORDS[a["register"]])
        if name == "reg_phrase":
            return _pick(rng, REGISTER_PHRASES[a["register"]])
        if name == "key":
            return _pick(rng, key_names(a["key"], a["mode"]))
        if name == "mode":
            return _pick(rng, MODE_WORDS[a["mode"]])
        if name == "drums_with":
            return _pick(rng, DRUM_WITH[a["drums"]])
        if name == "drums":
            return _pick(rng, DRUM_NP[a["drums"]])
        if name == "acc":
            acc = ACCOMPANIMENT_INSTRUMENT_WORDS[a["accompaniment_instrument"]]
            return _pick(rng, ACCOMPANIMENT_WORDS[a["accompaniment"]]).format(acc=acc)
        raise KeyError(f"template slot {{{name}}}")

    text = fix_articles(_SLOT.sub(lambda m: slot(m.group(1)), TEMPLATES[template_id]))
    text = re.sub(r" +", " ", text).strip()
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    if rng.random() < 0.3 and text[-1].isalnum():
        text += "."
    return text


def caption(attributes: dict[str, Any], split: str, rng: np.random.Generator) -> tuple[str, str]:
    """``(template id, caption)`` for a clip of ``split``: test clips use a test-only template half the time."""
    if split == "test" and rng.random() < 0.5:
        template = _pick(rng, TEST_ONLY_TEMPLATES)
    else:
        template = _pick(rng, SHARED_TEMPLATES)
    return template, fill(template, attributes, rng)


def templates_for(split: str) -> tuple[str, ...]:
    return tuple(TEMPLATES) if split == "test" else SHARED_TEMPLATES
