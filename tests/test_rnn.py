"""lib.rnn: from-scratch cells against nn.RNN/nn.LSTM/nn.GRU, gradients through time, the char LM."""
import numpy as np
import pytest
import torch
from torch import nn

from lib.rnn import CharRNN, GRUCell, LSTMCell, RNNCell, gradient_norms_through_time, unroll


TORCH = {RNNCell: nn.RNN, LSTMCell: nn.LSTM, GRUCell: nn.GRU}


@pytest.mark.parametrize("cell_cls", [RNNCell, LSTMCell, GRUCell])
def test_cells_match_torch_layers(cell_cls):
    torch.manual_seed(0)
    ref = TORCH[cell_cls](5, 7, batch_first=True)
    cell = cell_cls(5, 7).copy_from_torch(ref)
    x = torch.randn(3, 6, 5)
    out, state = unroll(cell, x)
    ref_out, ref_state = ref(x)
    assert torch.allclose(out, ref_out, atol=1e-5)
    if cell_cls is LSTMCell:
        assert torch.allclose(state[0], ref_state[0][0], atol=1e-5)
        assert torch.allclose(state[1], ref_state[1][0], atol=1e-5)
    else:
        assert torch.allclose(state, ref_state[0], atol=1e-5)


@pytest.mark.parametrize("cell_cls,torch_cell", [(RNNCell, nn.RNNCell), (LSTMCell, nn.LSTMCell),
                                                 (GRUCell, nn.GRUCell)])
def test_cells_match_torch_cells_with_state_and_gradients(cell_cls, torch_cell):
    torch.manual_seed(1)
    ref = torch_cell(4, 6)
    cell = cell_cls(4, 6).copy_from_torch(ref)
    x = torch.randn(2, 4)
    state = (torch.randn(2, 6), torch.randn(2, 6)) if cell_cls is LSTMCell else torch.randn(2, 6)
    got, expected = cell(x, state), ref(x, state)
    got_h = got[0] if isinstance(got, tuple) else got
    exp_h = expected[0] if isinstance(expected, tuple) else expected
    assert torch.allclose(got_h, exp_h, atol=1e-5)
    got_h.sum().backward()
    exp_h.sum().backward()
    assert torch.allclose(cell.weight_hh.grad, ref.weight_hh.grad, atol=1e-5)


def test_gradient_norms_vanish_or_explode_with_the_recurrent_weights():
    torch.manual_seed(0)
    x = torch.randn(4, 30, 3)
    cell = RNNCell(3, 16)
    with torch.no_grad():
        cell.weight_hh.mul_(0.3)
    norms = gradient_norms_through_time(cell, x)
    assert norms.shape == (30,) and not norms.requires_grad
    assert float(norms[-1]) > 1e3 * float(norms[0])  # far-back steps receive almost nothing
    with torch.no_grad():
        for p in (cell.weight_ih, cell.bias_ih, cell.bias_hh):  # stay near 0, where tanh is linear
            p.zero_()
        cell.weight_hh.copy_(1.5 * torch.eye(16))  # each step back multiplies the gradient by 1.5
    small_state = 1e-6 * torch.randn(4, 16)
    norms = gradient_norms_through_time(cell, x, small_state)
    assert float(norms[0]) > 1e3 * float(norms[-1])  # the gradient grows going back in time


def test_char_rnn_shapes_causality_and_errors():
    torch.manual_seed(0)
    for kind in ("rnn", "lstm", "gru"):
        model = CharRNN(10, kind, emb_dim=8, hidden_size=16)
        a = torch.randint(0, 10, (2, 7))
        b = a.clone()
        b[:, 5:] = (b[:, 5:] + 1) % 10
        assert model(a).shape == (2, 7, 10)
        assert torch.allclose(model(a)[:, :5], model(b)[:, :5])  # the future does not leak back
    with pytest.raises(ValueError, match="kind"):
        CharRNN(10, "transformer")
    with pytest.raises(TypeError, match="int64"):
        CharRNN(10)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"\(B, 5\)"):
        RNNCell(5, 4)(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="weight_ih"):
        LSTMCell(5, 4).copy_from_torch(nn.GRU(5, 4))
    with pytest.raises(ValueError, match=r"\(B, T, I\)"):
        unroll(RNNCell(5, 4), torch.zeros(2, 5))


def test_keras_char_lstm_matches_torch():
    from lib.rnn import copy_char_lstm_to_keras, keras_char_lstm

    torch.manual_seed(0)
    model = CharRNN(12, "lstm", emb_dim=6, hidden_size=10).eval()
    keras_model = keras_char_lstm(12, emb_dim=6, hidden_size=10)
    copy_char_lstm_to_keras(model, keras_model)
    ids = torch.randint(0, 12, (3, 7))
    with torch.no_grad():
        expected = model(ids).numpy()
    assert np.abs(keras_model(ids.numpy()).numpy() - expected).max() < 1e-5
    with pytest.raises(ValueError, match="lstm"):
        copy_char_lstm_to_keras(CharRNN(12, "gru", 6, 10), keras_model)


def test_lstm_state_must_be_a_pair_of_the_right_shapes():
    cell = LSTMCell(3, 4)
    x, h = torch.randn(2, 3), torch.randn(2, 4)
    with pytest.raises(TypeError, match=r"tuple \(h, c\)"):
        cell(x, h)  # a bare h of batch 2 used to be unpacked into h = h[0], c = h[1]
    with pytest.raises(ValueError, match=r"c must have shape \(B, H\) = \(2, 4\), got \(2, 5\)"):
        cell(x, (h, torch.randn(2, 5)))
    with pytest.raises(ValueError, match=r"h must have shape \(B, H\) = \(2, 4\), got \(3, 4\)"):
        GRUCell(3, 4)(x, torch.randn(3, 4))
    with pytest.raises(TypeError, match="h must be a torch.Tensor"):
        RNNCell(3, 4)(x, [[0.0] * 4] * 2)


def test_rnn_sizes_sequences_and_ids_are_checked():
    with pytest.raises(TypeError, match="hidden_size must be a positive int"):
        RNNCell(3, 4.5)
    with pytest.raises(ValueError, match="at least one time step"):
        unroll(RNNCell(3, 4), torch.zeros(2, 0, 3))
    with pytest.raises(ValueError, match=r"x must have shape \(B, T, I\) = \(\*, \*, 3\), got \(2, 5, 4\)"):
        gradient_norms_through_time(RNNCell(3, 4), torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 10\); got \[0, 10\]"):
        CharRNN(10)(torch.tensor([[0, 10]]))
    with pytest.raises(ValueError, match="dropout"):
        CharRNN(10, dropout=1.5)
