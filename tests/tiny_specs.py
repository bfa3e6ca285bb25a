"""Spec texts shared by the tests (imported by name: pytest puts tests/ on the path)."""

from cadenza.core.components import BuildContext
from cadenza.core.spec.validate import check_tree

# A full three-stage cascade small enough to generate half a second in well under a second.
TINY_SPEC = """\
name: test-tiny
conditioner: {name: byte-text, params: {dim: 16, output: pooled}}
semantic_tokenizer: {name: mel-kmeans, params: {frame_rate: 25, vocab_size: 32}}
tokenizer: {name: tiny-codec, params: {num_codebooks: 4, codebook_size: 64, channels: 8, latent_dim: 16}}
stages:
  - name: semantic
    role: semantic
    model: transformer
    params: {d_model: 32, layers: 1, heads: 2}
    writes: semantic
    sampler: {name: top-k, params: {k: 8}}
    guidance_scale: 2.0
  - name: coarse
    role: coarse
    model: transformer
    params: {d_model: 32, layers: 1, heads: 2}
    reads: [semantic]
    writes: acoustic[0:2]
    sampler: top-k
    guidance_scale: 2.0
  - name: fine
    role: fine
    model: transformer
    params: {d_model: 32, layers: 1, heads: 2}
    reads:
      - acoustic[0:2]
    writes: acoustic[2:4]
    conditioning: none
    sampler: greedy
output: {seconds: 0.5}
"""


def codec_spec(tokenizer: dict, name: str = "codec") -> dict:
    """A one-stage spec around ``tokenizer`` (a spec's tokenizer mapping): the smallest cascade
    that resolves it the way a user's spec does."""
    return {"name": name,
            "conditioner": {"name": "byte-text", "params": {"dim": 16, "output": "pooled"}},
            "tokenizer": tokenizer,
            "stages": [{"name": "lm", "role": "acoustic", "model": "transformer", "writes": "acoustic",
                        "params": {"d_model": 32, "layers": 1, "heads": 2}}],
            "output": {"seconds": 0.5}}


def build_tokenizer(registry, tree: dict):
    """(tokenizer, described info) of a spec mapping, checked and built as the cascade builds it."""
    component = check_tree(tree, registry).tokenizer
    return component.entry.build(component.config, BuildContext(weights=component.weights)), component.info
