"""Spec texts shared by the tests (imported by name: pytest puts tests/ on the path)."""

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
