"""The fused GPU step (pipeline/generation/kernels.py), proven on the CPU under Triton's interpreter.

The kernels run on CUDA in production; Triton's interpreter executes the same kernel code with NumPy, so
the equivalence with transformers (teacher-forced logits within 1e-4 at every attention pattern) and the
kernels' own arithmetic (masked tails, several inner-dimension blocks, online softmax over key blocks) are
checked here without a GPU. The speed is measured by
`benchmarks/generation.py --kernels torch,triton` on a GPU, never here.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"  # before the kernels module first imports triton (jit reads it then)

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

from pipeline.generation import kernels  # noqa: E402
from pipeline.generation.fast import FastPrior, reference_window_logits  # noqa: E402
from pipeline.generation.presets import build_tiny  # noqa: E402
from pipeline.parallel import torch_threads  # noqa: E402

from .test_fast_sampler import VOCAB, _config, _labels  # noqa: E402


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Few keys per block, so that the test models' attention runs the online softmax over several blocks of
    keys as the 1b model's does on a GPU."""
    monkeypatch.setitem(kernels.ATTEND_BLOCKS, "block_keys", 4)
    with torch_threads(1):
        yield


def _fused(prior) -> FastPrior:
    fast = FastPrior(prior)
    fast.kernels = "triton"
    return fast


def _teacher_forced_error(prior, level: int, spans, labels_lyrics: int, batch: int = 2) -> float:
    n_ctx = prior.n_ctx
    generator = torch.Generator().manual_seed(10 + level)
    tokens = torch.randint(0, VOCAB, (batch, n_ctx), generator=generator)
    conds = [torch.randint(0, VOCAB, (batch, n_ctx // 4), generator=generator)] if level else None
    labels = torch.cat(_labels(batch, labels_lyrics))
    metadata = prior.get_metadata(labels, n_ctx, 3 * n_ctx * prior.raw_to_tokens, 0)
    reference = reference_window_logits(prior, tokens, conds, metadata)
    assert reference.abs().max() > 1e-3
    worst = 0.0
    for known, end in spans:
        ours = _fused(prior).teacher_forced(tokens[:, :end], conds, metadata, known, static=True)
        assert ours.shape == reference[:, known:end].shape
        worst = max(worst, float((ours - reference[:, known:end]).abs().max()))
    return worst


@pytest.mark.slow  # seconds under the interpreter
@pytest.mark.parametrize("key_splits, norm_block", [(1, 0), (3, 8)])  # a 16-wide model: two chunks
def test_fused_step_equals_transformers_in_block_transpose_and_previous_block_layers(monkeypatch, key_splits,
                                                                                       norm_block):
    monkeypatch.setitem(kernels.ATTEND_BLOCKS, "key_splits", key_splits)
    monkeypatch.setitem(kernels.MATMUL_BLOCKS, "norm_block", norm_block)
    prior = build_tiny(_config()).priors[1]  # 32 positions in blocks of 8: block, transpose, previous block
    # the first positions (no previous block yet, rings filling) and the last ones across a block boundary
    assert _teacher_forced_error(prior, 1, [(0, 2), (22, 26)], 0) < 1e-4


def _with_dense_layer(prior, index: int):
    """`prior` with its layer `index` rebuilt as transformers' dense-attention block (same weights): the test
    configurations reach dense attention only at layer 47 of the merged top prior, too deep for the interpreter."""
    from transformers.models.deprecated.jukebox.modeling_jukebox import JukeboxBlock

    stack = prior.prior.transformer
    dense = JukeboxBlock(prior.config, stack.n_ctx, attn_func="dense_attn")
    dense.load_state_dict(stack._attn_mods[index].state_dict())
    stack._attn_mods[index] = dense.eval()
    return prior


@pytest.mark.slow  # seconds under the interpreter
@pytest.mark.parametrize("key_splits", [1, 2])
def test_fused_step_equals_transformers_in_prime_and_dense_layers(monkeypatch, key_splits):
    monkeypatch.setitem(kernels.ATTEND_BLOCKS, "key_splits", key_splits)
    config = _config()
    config.prior_configs[0].num_layers = 16  # layer 15 reads the lyric prefix (prime_attn)
    model = build_tiny(config)
    upsampler = _with_dense_layer(model.priors[1], 1)
    assert "prime_attn" in {layer.attn_func for layer in model.priors[0].prior.transformer._attn_mods}
    # the merged top prior: lyric positions and the first music positions, then the window's end
    assert _teacher_forced_error(model.priors[0], 0, [(0, 1), (39, 40)], 30) < 1e-4
    assert _teacher_forced_error(upsampler, 1, [(0, 1), (21, 24)], 0) < 1e-4


@pytest.mark.slow  # seconds under the interpreter
@pytest.mark.parametrize("key_splits", [1, 2])
def test_fused_step_equals_transformers_in_cross_attention_layers(monkeypatch, key_splits):
    monkeypatch.setitem(kernels.ATTEND_BLOCKS, "key_splits", key_splits)
    prior = build_tiny(_config(separate_lyrics_encoder=True)).priors[0]
    labels = torch.cat(_labels(2, 30, seed=3))
    metadata = prior.get_metadata(labels, 0, 64 * prior.raw_to_tokens, 0)
    window = torch.randint(0, VOCAB, (2, prior.n_ctx), generator=torch.Generator().manual_seed(4))
    reference = reference_window_logits(prior, window, None, metadata)
    ours = _fused(prior).teacher_forced(window[:, :12], None, metadata, 10, static=True)
    assert (ours - reference[:, 10:12]).abs().max() < 1e-4


@pytest.mark.slow  # seconds under the interpreter
def test_fused_sampling_draws_the_tokens_the_torch_step_draws():
    prior = build_tiny(_config()).priors[2]
    labels = torch.cat(_labels(2, 0))
    metadata = prior.get_metadata(labels, 0, 3 * prior.n_ctx * prior.raw_to_tokens, 0)
    generator = torch.Generator().manual_seed(5)
    upper = [torch.randint(0, VOCAB, (2, prior.n_ctx // 4), generator=generator)]
    prime = torch.randint(0, VOCAB, (2, 20), generator=generator)
    drawn = {}
    for choice in ("torch", "triton"):
        fast = FastPrior(prior)
        fast.kernels = choice
        drawn[choice] = fast.sample_window(2, prime, upper, metadata, [3, 4], temperature=0.98, step="static")
    assert drawn["torch"].shape == (2, prior.n_ctx)
    assert torch.equal(drawn["torch"], drawn["triton"])


@pytest.mark.parametrize("norm_block", [0, 64])  # the layer norm's statistics in two passes, or one merged pass
@pytest.mark.parametrize("norm, gelu, residual", [(False, False, True), (True, False, False), (True, True, False)])
def test_a_fused_product_equals_torch(monkeypatch, norm, gelu, residual, norm_block):
    monkeypatch.setitem(kernels.MATMUL_BLOCKS, "block_k", 32)
    monkeypatch.setitem(kernels.MATMUL_BLOCKS, "norm_block", norm_block)
    generator = torch.Generator().manual_seed(1)
    m, k, n = 3, 150, 40  # K: 5 blocks of 32, the last one partial; N: 3 blocks of 16, the last one partial
    x = torch.randn(m, k, generator=generator) * 3 + 1
    weight, bias = torch.randn(k, n, generator=generator), torch.randn(n, generator=generator)
    layer_norm = (torch.randn(k, generator=generator), torch.randn(k, generator=generator), 1e-5) if norm else None
    res = torch.randn(m, n, generator=generator) if residual else None
    out = kernels.norm_matmul(x, weight, bias, norm=layer_norm, residual=res,
                              activation=kernels.QUICK_GELU if gelu else kernels.NO_ACTIVATION)
    expected = (torch.layer_norm(x, (k,), *layer_norm) if norm else x) @ weight + bias
    if gelu:
        expected = expected * torch.sigmoid(1.702 * expected)
    if residual:
        expected = expected + res
    assert torch.allclose(out, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("key_splits", [1, 3])  # one program per clip and head, or three combined
@pytest.mark.parametrize("position", [0, 7, 10])
def test_fused_attention_writes_this_positions_key_and_reads_the_ones_before(monkeypatch, position, key_splits):
    monkeypatch.setitem(kernels.ATTEND_BLOCKS, "key_splits", key_splits)
    generator = torch.Generator().manual_seed(2)
    batch, heads, head_dim, slots = 2, 2, 12, 11
    joint = torch.randn(batch, 2, heads, slots, head_dim, generator=generator)
    qkv = torch.randn(batch, 3 * heads * head_dim, generator=generator)
    width = heads * head_dim
    before = joint.clone()
    counters = torch.zeros(batch * heads, dtype=torch.int32)
    context = kernels.attend(kernels.DENSE, qkv[:, :width], qkv[:, width:], joint, torch.tensor([position]),
                             heads, head_dim, 0, 0, counters)
    assert not counters.any()  # left zero for the next step's replay
    rows = qkv.view(batch, 3, heads, head_dim)
    expected_cache = before.clone()
    expected_cache[:, :, :, position] = rows[:, 1:]
    assert torch.equal(joint, expected_cache)  # this position's key and value were written, nothing else
    keys, values = expected_cache[:, 0, :, :position + 1], expected_cache[:, 1, :, :position + 1]
    expected = torch.nn.functional.scaled_dot_product_attention(rows[:, 0].unsqueeze(2), keys, values)
    assert torch.allclose(context, expected.reshape(batch, width), atol=1e-5)

