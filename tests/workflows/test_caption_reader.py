"""Reading a prompt's attributes back from its words (what ``--rerank`` by adherence relies on)."""

from __future__ import annotations

import numpy as np
import pytest

from cadenza.plugins.estimators.model import pitch_class
from cadenza.plugins.workflows.corpus import captions
from cadenza.plugins.workflows.corpus.build import Settings, plan_clip
from cadenza.plugins.workflows.corpus.caption_reader import read_caption

ALWAYS = {"instrument", "tempo_class", "mode", "dynamics", "drums"}  # every template names these


def same(name: str, read, label) -> bool:
    if name == "key":
        return pitch_class(read) == pitch_class(label)
    if name == "drums" and read == "yes":
        return label != "none"
    return read == label


def test_every_template_reads_back_as_the_attributes_it_was_written_from():
    """A seed the default model never trained on; every template, train and test-only, 40 clips each."""
    rng = np.random.default_rng(0)
    for index in range(40):
        record = plan_clip(Settings(seed=31), index)
        for template_id, template in captions.TEMPLATES.items():
            text = captions.fill(template_id, record, rng)
            read = read_caption(text)
            # "A minor harp melody" at the start reads as the article: the key is then left unchecked, never wrong
            keyed = "{key}" in template and not text.startswith(("A major", "A minor", "A-major", "A-minor"))
            stated = ALWAYS | ({"key"} if keyed else set()) | ({"register"} if "{reg" in template else set())
            assert stated <= set(read), (text, read)
            wrong = {name: (read[name], record[name]) for name in stated if not same(name, read[name], record[name])}
            assert not wrong, (text, wrong)


@pytest.mark.parametrize(("prompt", "expected"), [
    ("a slow, dark cello drone", {"tempo_class": "slow", "instrument": "cello"}),
    ("an upbeat electric piano groove at 128 BPM in F# minor with drums",
     {"tempo_class": "fast", "bpm": 128, "instrument": "electric piano", "key": "F#", "mode": "minor", "drums": "yes"}),
    ("A minor-key harp tune, played quietly, drumless", {"mode": "minor", "instrument": "harp", "dynamics": "soft",
                                                         "drums": "none"}),
    ("piano in B flat major, loud, in a high register, drums: no drums",
     {"instrument": "piano", "key": "Bb", "mode": "major", "dynamics": "loud", "register": "high", "drums": "none"}),
    ("a violin melody backed by held piano chords", {"instrument": "violin"}),
    ("ambient textures", {}),
])
def test_free_prompts_give_what_they_state_and_nothing_else(prompt, expected):
    assert read_caption(prompt) == expected
