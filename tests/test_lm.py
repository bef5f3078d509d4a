"""lib.lm: bigram counts, nats per character, sampling reproducible under a seed."""
import math

import pytest
import torch

from lib.lm import BigramLM, bigram_counts, lm_loss, nll_per_char, sample, train_lm
from lib.rnn import CharRNN
from lib.text import CharVocab
from lib.transformer import GPT, TransformerConfig

V = CharVocab()
NAMES = ["anna", "ann", "bob", "abba"]


def test_bigram_counts_and_probabilities():
    counts = bigram_counts(["ab"], V)
    a, b = V.stoi["a"], V.stoi["b"]
    assert counts[V.bos, a] == 1 and counts[a, b] == 1 and counts[b, V.bos] == 1 and counts.sum() == 3
    model = BigramLM(NAMES, V, alpha=0.0)
    probs = model.log_probs.exp()
    assert torch.allclose(probs[V.bos].sum(), torch.tensor(1.0))
    assert math.isclose(float(probs[V.bos, a]), 3 / 4, rel_tol=1e-6)  # 3 of 4 names start with "a"


def test_nll_per_char_by_hand():
    model = BigramLM(["ab"], V, alpha=0.0)
    assert nll_per_char(model, ["ab"], V) == pytest.approx(0.0, abs=1e-6)  # every step is certain
    uniform = BigramLM(["ab"], V, alpha=1e9)
    assert nll_per_char(uniform, NAMES, V) == pytest.approx(math.log(len(V)), rel=1e-4)


def test_lm_loss_ignores_padding():
    logits = torch.randn(2, 3, len(V))
    targets = torch.tensor([[4, 5, -100], [6, -100, -100]])
    expected = torch.nn.functional.cross_entropy(logits[[0, 0, 1], [0, 1, 0]], torch.tensor([4, 5, 6]))
    assert torch.allclose(lm_loss(logits, targets), expected)
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        lm_loss(logits[0], targets)


@pytest.mark.parametrize("make", [lambda: BigramLM(NAMES, V), lambda: CharRNN(len(V), "gru", 8, 16),
                                  lambda: GPT(TransformerConfig(len(V), 16, 2, 1, max_len=8))])
def test_sample_reproducible_with_prefix(make):
    torch.manual_seed(0)
    model = make()
    state = torch.random.get_rng_state()
    a = sample(model, V, n=5, temperature=1.0, prefix="an", max_len=12, seed=7)
    b = sample(model, V, n=5, temperature=1.0, prefix="an", max_len=12, seed=7)
    assert a == b and torch.equal(state, torch.random.get_rng_state())
    assert all(s.startswith("an") and len(s) <= 12 and set(s) <= set("abcdefghijklmnopqrstuvwxyz") for s in a)
    assert sample(model, V, n=5, seed=8) != sample(model, V, n=5, seed=9)


def test_temperature_zero_is_greedy():
    model = BigramLM(["ab"] * 5 + ["b"], V, alpha=0.0)
    assert sample(model, V, n=3, temperature=0) == ["ab"] * 3
    with pytest.raises(ValueError, match="temperature"):
        sample(model, V, temperature=-1)


def test_train_lm_is_reproducible_and_restores_best():
    from lib.text import names_split

    names = names_split("first", "train")[:64]
    val = names_split("first", "val")[:32]
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        model = CharRNN(len(V), "gru", 8, 16)
        history = train_lm(model, names, val, V, epochs=2, batch_size=16, device="cpu", progress=False)
        runs.append(model.head.weight.detach().clone())
    assert torch.equal(runs[0], runs[1])
    assert len(history["val_loss"]) == 2 and "grad_norm" in history
    # trained on one name only, the model gets worse on others after its first epoch: the best epoch
    # is the first, and its weights must be the ones left in the model
    torch.manual_seed(0)
    model = CharRNN(len(V), "gru", 8, 16)
    others = ["bob", "otto", "eve", "max"]
    val_loss = train_lm(model, ["anna"] * 64, others, V, epochs=3, lr=3e-2, batch_size=16, device="cpu",
                        progress=False)["val_loss"]
    assert min(val_loss) == val_loss[0] and val_loss[-1] > 1.01 * val_loss[0], val_loss
    assert nll_per_char(model, others, V) == pytest.approx(val_loss[0], rel=1e-5)  # val_loss is in nats per char


def test_lm_functions_check_names_ids_and_batch_sizes():
    bigram = BigramLM(NAMES, V)
    with pytest.raises(TypeError, match="names must be a list of strings"):
        bigram_counts("emma", V)  # used to count the four one-letter "names" e, m, m, a
    with pytest.raises(TypeError, match="names must be a list of strings"):
        nll_per_char(bigram, "emma", V)
    for bad in (0, -1):
        with pytest.raises(ValueError, match="batch_size must be a positive int"):
            nll_per_char(bigram, NAMES, V, batch_size=bad)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 29\)"):
        bigram(torch.tensor([[0, 29]]))
    with pytest.raises(TypeError, match="vocab must be a lib.text.CharVocab"):
        sample(bigram, "abc")
    with pytest.raises(ValueError, match="alpha must be a non-negative number"):
        BigramLM(NAMES, V, alpha=float("nan"))


def test_train_lm_schedule_option():
    from lib.recipes import cosine
    from lib.text import names_split

    names = names_split("first", "train")[:64]
    val = names_split("first", "val")[:32]

    def run(**kwargs):
        torch.manual_seed(0)
        model = CharRNN(len(V), "gru", 8, 16)
        train_lm(model, names, val, V, epochs=2, batch_size=16, device="cpu", progress=False, **kwargs)
        return {k: p.detach().clone() for k, p in model.state_dict().items()}

    torch.manual_seed(0)
    initial = CharRNN(len(V), "gru", 8, 16).state_dict()
    frozen = run(schedule=lambda step, total: 0.0)  # a learning rate of 0 at every step: nothing moves
    assert all(torch.equal(frozen[k], initial[k]) for k in initial)
    default, explicit = run(), run(schedule=cosine)  # None is today's cosine, bit for bit
    assert all(torch.equal(default[k], explicit[k]) for k in default)
    assert not all(torch.equal(default[k], initial[k]) for k in default)
    warm = run(schedule=lambda step, total: min(1.0, (step + 1) / 4))
    assert not all(torch.equal(warm[k], default[k]) for k in default)  # the schedule is really used
    with pytest.raises(TypeError, match="schedule must be a function"):
        run(schedule=0.5)
