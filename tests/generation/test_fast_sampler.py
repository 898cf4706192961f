"""Our Jukebox sampler (pipeline/generation/fast.py) against transformers' JukeboxPrior, in two halves:

1. teacher-forced, our decode step's logits equal transformers' training-forward logits, for every level
   and every attention pattern, across window boundaries of a multi-window clip, with lyrics, upper-level
   conditioning and a prime (the earlier window's tokens);
2. from the same logits, our filtered distribution equals the one transformers samples from
   (`filter_logits`, softmaxed), and our draws follow it (chi-square).

Together: our sampler draws each token from the distribution transformers' sampler draws it from.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from pipeline.generation.fast import (
    ClipNoise, FastPrior, draw, draw_scaled, filtered_logits, gumbel_, reference_window_logits,
)
from pipeline.generation.presets import build_tiny
from pipeline.parallel import torch_threads
from pipeline.generation.sampler import sample_level, window_starts

VOCAB = 32
LYRIC_VOCAB = 20


def _config(separate_lyrics_encoder: bool = False):
    """Short contexts (several windows per clip) and deep enough stacks to reach every attention pattern:
    a merged top prior of 48 layers (block, transpose, previous-block, prime at layers 15/31, dense at 47),
    or a separate lyric encoder with cross-attention (the 5b layout); upsamplers conditioned on the level above."""
    from transformers.models.deprecated.jukebox import JukeboxConfig

    common = dict(hidden_size=16, n_heads=2, res_conv_width=8, res_conv_depth=1, music_vocab_size=VOCAB,
                  metadata_dims=[LYRIC_VOCAB, 8], mask=True, timing_dims=8, lyric_vocab_size=LYRIC_VOCAB)
    if separate_lyrics_encoder:
        encoder = dict(hidden_size=16, n_heads=2, n_ctx=8, blocks=2, num_layers=3, mask=True,
                       attention_pattern="raw_column_previous_row_attention", is_encoder_decoder=False,
                       nb_relevant_lyric_tokens=0, lyric_vocab_size=LYRIC_VOCAB, res_conv_width=8)
        top = dict(level=0, n_ctx=32, nb_relevant_lyric_tokens=8, blocks=4, num_layers=19,
                   attention_pattern="large_separated_enc_dec_w_lyrics", is_encoder_decoder=False,
                   encoder_config=encoder, alignment_layer=18, alignment_head=0, merged_decoder=False, **common)
    else:
        top = dict(level=0, n_ctx=40, nb_relevant_lyric_tokens=8, blocks=6, num_layers=48, alignment_layer=1,
                   alignment_head=0, **common)
    upsampler = dict(n_ctx=32, blocks=4, num_layers=4, attention_pattern="raw_column_previous_row_attention",
                     is_encoder_decoder=False, nb_relevant_lyric_tokens=0, alignment_layer=None,
                     alignment_head=None, **{**common, "n_heads": 1})
    return JukeboxConfig(
        vqvae_config=dict(res_conv_width=8, res_conv_depth=1, embed_dim=8, nb_discrete_codes=VOCAB),
        prior_config_list=[top, dict(level=1, **upsampler), dict(level=2, **upsampler)],
        min_duration=0, max_duration=60, max_nb_genres=1, hop_fraction=[0.5, 0.5, 0.5],
    )


@pytest.fixture(scope="module")
def model():
    with torch_threads(1):  # restored after the module: later tests see the process's own setting
        yield build_tiny(_config())


def _labels(batch: int, lyrics: int, seed: int = 0):
    """Per clip: (1, 4 + genre + lyrics) label rows as the tokenizer makes them (artist, genre, lyric ids)."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for clip in range(batch):
        row = torch.zeros(1, 5 + lyrics, dtype=torch.long)
        row[0, 3], row[0, 4] = 1 + clip % 5, 2 + clip % 3
        row[0, 5:] = torch.randint(1, LYRIC_VOCAB, (lyrics,), generator=generator)
        rows.append(row)
    return rows


def test_the_test_models_reach_every_attention_pattern(model):
    patterns = {layer.attn_func for prior in (model.priors[0], build_tiny(_config(True)).priors[0])
                for layer in prior.prior.transformer._attn_mods}
    assert patterns == {"block_attn", "transpose_block_attn", "prev_block_attn", "prime_attn", "dense_attn",
                        "cross_attention"}


@pytest.mark.parametrize("level", [0, 1, 2])
@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_teacher_forced_logits_equal_transformers_across_windows(model, level, static):
    prior = model.priors[level]
    fast = FastPrior(prior)
    n_ctx = prior.n_ctx
    hop = int(model.config.hop_fraction[level] * n_ctx)
    batch, n_tokens = 2, 2 * n_ctx + hop
    generator = torch.Generator().manual_seed(level)
    tokens = torch.randint(0, VOCAB, (batch, n_tokens), generator=generator)
    upper = torch.randint(0, VOCAB, (batch, n_tokens // 4), generator=generator)
    labels = torch.cat(_labels(batch, 30 if level == 0 else 0))
    starts = window_starts(n_tokens, n_ctx, hop)
    assert len(starts) >= 3
    compared = 0
    for start in starts:
        metadata = prior.get_metadata(labels, start, n_tokens * prior.raw_to_tokens, 0)
        conds = [upper[:, start // 4:(start + n_ctx) // 4]] if level else None
        window = tokens[:, start:start + n_ctx]
        known = 0 if start == 0 else n_ctx - hop  # a later window is primed with the overlap, as sampling is
        reference = reference_window_logits(prior, window, conds, metadata)[:, known:]
        ours = fast.teacher_forced(window, conds, metadata, known, static=static)
        assert ours.shape == reference.shape
        assert torch.isfinite(reference).all() and reference.abs().max() > 1e-3
        assert (ours - reference).abs().max() < 1e-4
        compared += ours.shape[1]
    assert compared == n_tokens


@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_teacher_forced_logits_with_a_separate_lyric_encoder(static):
    prior = build_tiny(_config(separate_lyrics_encoder=True)).priors[0]
    labels = torch.cat(_labels(2, 30, seed=3))
    metadata = prior.get_metadata(labels, 0, 64 * prior.raw_to_tokens, 0)
    window = torch.randint(0, VOCAB, (2, prior.n_ctx), generator=torch.Generator().manual_seed(4))
    reference = reference_window_logits(prior, window, None, metadata)
    for known in (0, 10):
        ours = FastPrior(prior).teacher_forced(window, None, metadata, known, static=static)
        assert (ours - reference[:, known:]).abs().max() < 1e-4


def _logits_with_ties(rows: int = 6, vocab: int = 40, seed: int = 0):
    logits = torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 2
    logits[:, 5] = logits[:, 7]  # ties at the top-k boundary must be kept as transformers keeps them
    return logits


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, 0, 0.0), (0.7, 5, 0.0), (1.3, 0, 0.8), (0.9, 8, 0.6),
                                                     (1.0, 1, 0.0), (0.98, 0, 0.05)])
def test_filtered_distribution_equals_transformers(temperature, top_k, top_p):
    from transformers.models.deprecated.jukebox.modeling_jukebox import filter_logits

    logits = _logits_with_ties()
    theirs = torch.softmax(filter_logits(logits / temperature, top_k=top_k, top_p=top_p), dim=-1)
    ours = torch.softmax(filtered_logits(logits, temperature, top_k, top_p), dim=-1)
    assert (ours - theirs).abs().max() < 1e-6
    if top_k or top_p:
        assert (theirs == 0).any()  # the filter did remove tokens: the comparison covers it


@pytest.mark.parametrize("temperature,top_k,top_p,scaled", [(0.9, 0, 0.0, False), (0.9, 0, 0.0, True),
                                                            (1.2, 6, 0.0, False), (0.8, 0, 0.7, False)])
def test_draws_follow_the_filtered_distribution(temperature, top_k, top_p, scaled):
    draws = 40_000
    logits = _logits_with_ties(rows=1, vocab=12, seed=5)
    probabilities = torch.softmax(filtered_logits(logits, temperature, top_k, top_p), dim=-1)[0].double()
    noise = gumbel_(torch.rand(draws, 12, generator=torch.Generator().manual_seed(11)))
    if scaled:  # the CPU step's fast path: temperature folded into the noise
        tokens = draw_scaled(logits.expand(draws, 12).clone(), noise * temperature)
    else:
        tokens = draw(logits.expand(draws, 12), noise, temperature, top_k, top_p)
    counts = torch.bincount(tokens, minlength=12).double()
    support = probabilities > 0
    assert counts[~support].sum() == 0  # never a filtered-out token
    expected = probabilities[support] / probabilities[support].sum() * draws
    chi2, p_value = stats.chisquare(counts[support].numpy(), expected.numpy())
    assert p_value > 1e-3, (chi2, p_value)


def test_a_clip_keeps_its_own_random_stream(model):
    first = ClipNoise([1, 2], VOCAB, "cpu").refill().clone()
    alone = ClipNoise([2], VOCAB, "cpu").refill().clone()
    assert torch.equal(first[:, 1], alone[:, 0]) and not torch.equal(first[:, 0], first[:, 1])


def _sample_clips(model, labels, seeds, n_tokens_top: int = 64, step=None):
    """Every level of clips whose contexts need several windows, with per-clip seeds."""
    import pipeline.generation.sampler as sampler

    length = n_tokens_top * 128
    upper_labels = [torch.tensor([[0, 0, 0, 1, 3]])] * len(seeds)
    tokens = []
    original = sampler.fast_prior
    if step is not None:  # route the windows through one form of the step
        class Routed:
            def __init__(self, prior):
                self.fast = original(prior)

            def sample_window(self, *args, **kwargs):
                return self.fast.sample_window(*args, step=step, **kwargs)
        sampler.fast_prior = Routed
    try:
        for level in range(3):
            tokens.append(sample_level(model, level, tokens[-1] if tokens else None,
                                       labels if level == 0 else upper_labels, len(seeds), length,
                                       temperature=0.9, seeds=seeds))
    finally:
        sampler.fast_prior = original
    return tokens


def test_a_clips_tokens_do_not_depend_on_the_batch_it_is_sampled_in(model):
    labels = _labels(3, 30, seed=9)
    together = _sample_clips(model, labels, [11, 22, 33])
    assert [t.shape[1] for t in together] == [64, 256, 1024]  # several windows of a 40/32/32-token context per level
    reordered = _sample_clips(model, [labels[2], labels[0]], [33, 11])
    alone = _sample_clips(model, [labels[1]], [22])
    for level in range(3):
        assert torch.equal(together[level][0], reordered[level][1])
        assert torch.equal(together[level][2], reordered[level][0])
        assert torch.equal(together[level][1], alone[level][0])
        assert not torch.equal(together[level][0], together[level][2])


def test_the_captured_step_form_samples_what_the_eager_step_samples(model):
    """The tensor-position step (the one CUDA graphs capture) over several windows, its buffers reused with
    the previous window's stale caches, samples the very tokens the sliced CPU step samples."""
    labels = _labels(2, 30, seed=2)
    eager = _sample_clips(model, labels, [5, 6], step="eager")
    static = _sample_clips(model, labels, [5, 6], step="static")
    for a, b in zip(eager, static):
        assert torch.equal(a, b)


def test_a_merged_top_prior_maps_sampled_lyric_ids_to_code_zero_as_transformers_does(model):
    prior = model.priors[0]
    metadata = prior.get_metadata(torch.cat(_labels(4, 30)), 0, 40 * prior.raw_to_tokens, 0)
    tokens = FastPrior(prior).sample_window(4, None, None, metadata, [1, 2, 3, 4], temperature=1.0)
    assert tokens.shape == (4, prior.n_ctx) and tokens.min() >= 0 and tokens.max() < VOCAB


def test_the_reference_sampler_stays_selectable(model):
    labels = _labels(2, 30)
    torch.manual_seed(0)
    top = sample_level(model, 0, None, labels, 2, 96 * 128, temperature=0.9, sampler="reference")
    assert top.shape == (2, 96) and top.max() < VOCAB
    with pytest.raises(ValueError, match="sampler 'fastest'"):
        sample_level(model, 0, None, labels, 2, 96 * 128, temperature=0.9, sampler="fastest")


def test_sampling_reproduces_for_the_same_seeds_and_differs_for_others(model):
    labels = _labels(2, 30, seed=1)
    first = _sample_clips(model, labels, [7, 8], n_tokens_top=40)
    again = _sample_clips(model, labels, [7, 8], n_tokens_top=40)
    other = _sample_clips(model, labels, [9, 8], n_tokens_top=40)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0][0], other[0][0]) and torch.equal(first[0][1], other[0][1])
    assert np.unique(first[2].numpy()).size > VOCAB // 2  # a spread of codes, not one repeated token


def test_the_kernels_setting_reaches_the_fast_sampler_and_a_wrong_one_is_refused(model):
    from pipeline.generation.sampler import fast_prior

    prior = model.priors[2]
    labels = [torch.tensor([[0, 0, 0, 1, 3]])]
    upper = torch.randint(0, VOCAB, (1, 8), generator=torch.Generator().manual_seed(0))
    drawn = {}
    for kernels in ("torch", "triton"):
        drawn[kernels] = sample_level(model, 2, upper, labels, 1, 32 * 8, temperature=0.9, seeds=[3], kernels=kernels)
        assert fast_prior(prior).kernels == kernels
    assert torch.equal(drawn["torch"], drawn["triton"])  # the CPU samples with its own step either way
    with pytest.raises(ValueError, match="kernels 'cuda'"):
        sample_level(model, 2, upper, labels, 1, 32 * 8, temperature=0.9, seeds=[3], kernels="cuda")
