"""``cadenza download`` finds every hub id a spec needs, without validating the spec first.

No network here: what is tested is the listing (from the spec and the plugins' defaults), the
cache lookup in the hub layout, and that an offline machine gets one line naming the id. The
download itself is ``huggingface_hub.snapshot_download`` (resumable), which needs the network.
"""

from __future__ import annotations

import json

import pytest

from cadenza.plugins.workflows.download.fetch import HubCheckpoint, hub_checkpoints
from hf_cache import cached_snapshot, use_cache

SPEC = """\
name: hub-ids
conditioner: {name: t5, weights: facebook/musicgen-small}
tokenizer: {name: tiny-codec, params: {num_codebooks: 4, codebook_size: 64}}
stages:
  - {name: lm, role: acoustic, model: musicgen, weights: facebook/musicgen-small, writes: acoustic,
     conditioning: cross, sampler: greedy}
"""


def fake_checkpoint(folder):
    (folder / "config.json").write_text(json.dumps({"model_type": "musicgen"}))


def test_ids_come_from_the_spec_and_from_defaults(write_spec, registry):
    assert hub_checkpoints(write_spec(SPEC), registry) == [
        HubCheckpoint("facebook/musicgen-small", ("conditioner (t5)", "stage 'lm' (musicgen)"))]
    default_t5 = SPEC.replace("{name: t5, weights: facebook/musicgen-small}", "{name: t5}")
    assert hub_checkpoints(write_spec(default_t5), registry)[0] == HubCheckpoint("google-t5/t5-base",
                                                                                 ("conditioner (t5)",))


def test_a_cached_checkpoint_is_not_fetched_again(cli, write_spec, tmp_path, monkeypatch):
    cached_snapshot(tmp_path / "cache", "facebook/musicgen-small", fake_checkpoint)
    use_cache(monkeypatch, tmp_path / "cache")
    code, out, err = cli("download", write_spec(SPEC))
    assert code == 0 and "facebook/musicgen-small: cached in" in out and err == ""


@pytest.mark.parametrize("listing", [True, False])
def test_offline_and_uncached_is_one_line(cli, write_spec, tmp_path, monkeypatch, listing):
    use_cache(monkeypatch, tmp_path / "empty")
    code, out, err = cli("download", write_spec(SPEC), *(["--list"] if listing else []))
    assert code == 2
    if listing:
        assert out.strip() == "facebook/musicgen-small: not cached (for conditioner (t5), stage 'lm' (musicgen))"
    else:
        assert err.strip().splitlines() == [
            "cadenza download: error: facebook/musicgen-small: not in the Hugging Face cache and the machine is "
            "offline (HF_HUB_OFFLINE/CADENZA_OFFLINE is set): run `cadenza download` where there is a network"]


def test_generating_without_the_weights_names_the_download_command(cli, write_spec, tmp_path, monkeypatch):
    use_cache(monkeypatch, tmp_path / "empty")
    spec = write_spec(SPEC.replace("facebook/musicgen-small", "someone/musicgen-custom"))
    code, _, err = cli("generate", "x", "-p", spec, "-o", tmp_path / "o.wav", "-q")
    lines = err.strip().splitlines()
    # one line, FILE:LINE: the conditioner cannot read the checkpoint, and the stage that reads the same
    # checkpoint (and is sized from the conditioner) is skipped rather than reporting the cause again
    assert code == 2 and len(lines) == 1
    assert all(str(spec) in line and "someone/musicgen-custom" in line and "cadenza download" in line for line in lines)
    assert not (tmp_path / "o.wav").exists()
