"""lib.transformer: shapes, masks, causality, determinism, errors."""
import pytest
import torch
import torch.nn.functional as F

from lib.transformer import GPT, Block, Encoder, Seq2Seq, TransformerConfig



def _ids(b=3, t=7, v=20, seed=0):
    return torch.randint(3, v, (b, t), generator=torch.Generator().manual_seed(seed))


def test_encoder_shapes_and_attention():
    torch.manual_seed(0)
    enc = Encoder(20, d_model=32, n_heads=4, n_layers=2, max_len=16)
    ids = _ids()
    h = enc(ids)
    assert h.shape == (3, 7, 32)
    h2, att = enc(ids, return_attention=True)
    assert torch.allclose(h, h2, atol=1e-5)
    assert len(att) == 2 and att[0].shape == (3, 4, 7, 7)
    assert enc.config.d_ff == 128


def test_encoder_padding_is_ignored():
    torch.manual_seed(0)
    enc = Encoder(20, d_model=32, n_heads=2, n_layers=2, max_len=16).eval()
    ids = _ids(b=1, t=5)
    padded = torch.cat([ids, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    pad = padded == 0
    h_short = enc(ids)
    h_long, att = enc(padded, pad_mask=pad, return_attention=True)
    assert torch.allclose(h_short, h_long[:, :5], atol=1e-5)
    assert float(att[0][..., 5:].detach().abs().max()) == 0.0


def test_encoder_is_bidirectional_gpt_is_causal():
    torch.manual_seed(0)
    cfg = TransformerConfig(20, d_model=32, n_heads=2, n_layers=2, max_len=16)
    enc, gpt = Encoder.from_config(cfg).eval(), GPT(cfg).eval()
    with torch.no_grad():  # larger weights than the 0.02 init, so that any leak is visible
        for p in [*enc.parameters(), *gpt.parameters()]:
            p.normal_(0.0, 0.3)
    a, b = _ids(b=1), _ids(b=1, seed=1)
    b[:, :4] = a[:, :4]  # same prefix, different future
    assert not torch.allclose(enc(a)[:, :4], enc(b)[:, :4])   # the encoder sees the future
    assert torch.allclose(gpt(a)[:, :4], gpt(b)[:, :4], atol=1e-6)  # the GPT must not
    _, att = gpt(a, return_attention=True)
    future = torch.ones(7, 7, dtype=torch.bool).triu(1)
    assert all(float(w[..., future].detach().abs().max()) == 0.0 for w in att)


def test_gpt_gradients_do_not_flow_from_future():
    torch.manual_seed(0)
    gpt = GPT(TransformerConfig(20, d_model=16, n_heads=2, n_layers=2, max_len=16))
    emb = gpt.body.tok
    ids = _ids(b=1)
    x = emb(ids).detach().requires_grad_(True)
    pos = gpt.body.pos(torch.arange(7))
    h = x + pos
    for block in gpt.body.blocks:
        h, _ = block(h, causal=True)
    gpt.head(gpt.body.ln_f(h))[0, 3].sum().backward()
    assert float(x.grad[0, 4:].abs().max()) == 0.0 and float(x.grad[0, :4].abs().max()) > 0


def test_block_preserves_shape_and_requires_memory_for_cross():
    blk = Block(16, 2, cross_attention=True)
    x, mem = torch.randn(2, 5, 16), torch.randn(2, 9, 16)
    y, w = blk(x, memory=mem, need_weights=True)
    assert y.shape == x.shape and w["cross"].shape == (2, 2, 5, 9)
    with pytest.raises(ValueError, match="memory"):
        blk(x)


def test_seq2seq_trains_and_decodes():
    torch.manual_seed(0)
    model = Seq2Seq(TransformerConfig(6, d_model=16, n_heads=2, n_layers=1, max_len=8))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(60):  # the copy task: the loss must fall well below its start, log(6) = 1.79
        src = torch.randint(0, 5, (32, 4), generator=g)
        tgt_in = torch.cat([torch.full((32, 1), 5), src[:, :-1]], dim=1)
        loss = F.cross_entropy(model(src, tgt_in).reshape(-1, 6), src.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[0] > 1.5 and sum(losses[-5:]) / 5 < 1.3
    src = torch.randint(0, 5, (10, 4), generator=g)
    out = model.greedy_decode(src, start=5, steps=4)
    assert out.shape == (10, 4) and out.dtype == torch.long and model.training
    assert (out == src).float().mean() > 0.4  # copies far above chance (1 in 5), after only 60 steps
    _, att = model(src[:2], torch.cat([torch.full((2, 1), 5), src[:2, :-1]], 1), return_attention=True)
    assert set(att) == {"encoder", "decoder", "cross"} and att["cross"][0].shape == (2, 2, 4, 4)


def test_deterministic_under_seed():
    outs = []
    for seed in (3, 3, 4):
        torch.manual_seed(seed)
        outs.append(GPT(TransformerConfig(20, d_model=16, n_heads=2, n_layers=1))(_ids()))
    assert torch.equal(outs[0], outs[1])
    assert not torch.allclose(outs[0], outs[2])  # the caller's seed decides: the model does not reseed itself


def test_errors():
    with pytest.raises(ValueError, match="divisible"):
        TransformerConfig(10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="vocab_size"):
        TransformerConfig(0)
    enc = Encoder(20, d_model=16, n_heads=2, n_layers=1, max_len=8)
    with pytest.raises(TypeError, match="int64"):
        enc(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="max_len"):
        enc(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 20\)"):
        enc(torch.full((2, 3), 25, dtype=torch.long))
    with pytest.raises(ValueError, match="pad_mask"):
        enc(torch.zeros(2, 3, dtype=torch.long), pad_mask=torch.zeros(2, 4, dtype=torch.bool))


def test_keras_block_matches_torch_block():
    import numpy as np

    from lib.transformer import copy_block_to_keras, keras_block

    torch.manual_seed(0)
    block = Block(16, 4).eval()
    with torch.no_grad():  # larger than the default init, so that every weight matters
        for p in block.parameters():
            p.normal_(0.0, 0.3)
    x = torch.randn(2, 5, 16)
    for causal in (False, True):
        kb = keras_block(16, 4, causal=causal)
        copy_block_to_keras(block, kb)
        with torch.no_grad():
            expected = block(x, causal=causal)[0].numpy()
        assert np.abs(kb(x.numpy()).numpy() - expected).max() < 1e-5
    assert kb.count_params() == sum(p.numel() for p in block.parameters())
    with pytest.raises(ValueError, match="self-attention"):
        copy_block_to_keras(Block(16, 4, cross_attention=True), kb)


def test_config_and_decoding_arguments_are_checked():
    import numpy as np

    with pytest.raises(ValueError, match="vocab_size must be a positive int"):
        TransformerConfig(vocab_size=True)
    config = TransformerConfig(vocab_size=np.int64(11), d_model=np.int64(16), n_heads=2, n_layers=1, max_len=8)
    assert type(config.vocab_size) is int and config.d_ff == 64
    with pytest.raises(ValueError, match="d_ff must be a positive int"):
        TransformerConfig(vocab_size=11, d_ff=0)
    with pytest.raises(ValueError, match="dropout must be a number in \\[0, 1\\)"):
        TransformerConfig(vocab_size=11, dropout=float("nan"))
    model = Seq2Seq(config)
    src = torch.zeros(2, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"steps must be an int in \[0, 8\]"):
        model.greedy_decode(src, start=10, steps=9)
    with pytest.raises(ValueError, match=r"start must be an int in \[0, 10\]"):
        model.greedy_decode(src, start=11, steps=2)
    block = Block(16, 2, cross_attention=True)
    with pytest.raises(ValueError, match=r"memory must have shape \(B, S, d_model\) = \(2, \*, 16\), got \(3, 4, 16\)"):
        block(torch.zeros(2, 5, 16), memory=torch.zeros(3, 4, 16))


def test_as_language_model_layout():
    import numpy as np

    from lib.text import IGNORE_INDEX
    from lib.transformer import as_language_model

    src = np.array([[1, 2, 3], [4, 5, 6]])
    tgt = src[:, ::-1].copy()
    ids, targets = as_language_model(src, tgt, sep=9)
    assert ids.dtype == np.int64 and targets.dtype == np.int64
    assert ids.tolist() == [[1, 2, 3, 9, 3, 2], [4, 5, 6, 9, 6, 5]]
    assert targets.tolist() == [[IGNORE_INDEX] * 3 + [3, 2, 1], [IGNORE_INDEX] * 3 + [6, 5, 4]]
    # the target at position t is the token the model reads at position t + 1 (next-token prediction)
    assert (ids[:, 4:] == targets[:, 3:-1]).all()
    with pytest.raises(ValueError, match="separator"):
        as_language_model(src, tgt, sep=3)
    with pytest.raises(ValueError, match="same number of rows"):
        as_language_model(src, tgt[:1], sep=9)
    with pytest.raises(ValueError, match="2-D integer"):
        as_language_model(src.astype(float), tgt, sep=9)
    with pytest.raises(TypeError, match="NumPy array or tensor"):
        as_language_model([[1, 2]], tgt, sep=9)


def test_target_correct_scores_only_the_target_positions():
    import numpy as np
    from torch import nn

    from lib.transformer import as_language_model, target_correct

    class Copier(nn.Module):
        """Writes the reversal of a 2-token source: after the separator the 2nd source token, then the 1st."""

        def forward(self, ids):
            guess = torch.zeros_like(ids)
            guess[:, 2] = ids[:, 1]       # read at the separator: the last source token
            guess[:, 3] = ids[:, 0]       # then the first one
            guess[:, 0] = 7               # a wrong guess at an unscored (source) position
            return F.one_hot(guess, 10).float()

    src = np.array([[1, 2], [3, 4]])
    ids, targets = as_language_model(src, src[:, ::-1].copy(), sep=9)
    correct = target_correct(Copier(), ids, targets)
    assert correct.shape == (2, 2) and correct.all()
    wrong = targets.copy()
    wrong[1, 3] = 0
    assert target_correct(Copier(), ids, wrong).tolist() == [[True, True], [True, False]]
    with pytest.raises(ValueError, match="same last positions"):
        bad = targets.copy()
        bad[0, 2] = -100
        target_correct(Copier(), ids, bad)
