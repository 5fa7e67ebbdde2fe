"""Deep ensembles and MC dropout: probability averaging and the entropy decomposition."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

import tileuq
from tileuq.models.scores import decompose, entropy, member_outputs

X = torch.randint(0, 256, (5, 48, 48, 3), dtype=torch.uint8)


def test_mutual_information_is_nonnegative_and_zero_for_one_member() -> None:
    torch.manual_seed(0)
    probs = F.softmax(3 * torch.randn(7, 100, 4), -1)
    raw_mi = entropy(probs.mean(0)) - entropy(probs).mean(0)  # before any clamping
    assert float(raw_mi.min()) >= -1e-6  # Jensen: H is concave
    dec = decompose(probs)
    assert bool((dec["mutual_information"] >= 0).all())
    assert torch.allclose(dec["entropy"], dec["expected_entropy"] + dec["mutual_information"])
    one = decompose(probs[:1])
    assert bool((one["mutual_information"] == 0).all())
    same = decompose(probs[:1].expand(5, -1, -1))
    assert float(same["mutual_information"].abs().max()) < 1e-6  # members that agree


def test_members_probabilities_are_averaged_not_logits() -> None:
    logits = torch.tensor([[[8.0, 0.0]], [[0.0, 1.0]]])  # two members, one sample
    out = member_outputs(logits)
    p = F.softmax(logits, -1).mean(0)
    assert torch.allclose(out["probabilities"], p)
    assert not torch.allclose(out["probabilities"], F.softmax(logits.mean(0), -1), atol=1e-3)
    assert torch.allclose(F.softmax(out["logits"], -1), p)  # logits = log p_bar


def test_ensemble_predict_is_the_mean_of_member_probabilities() -> None:
    model = tileuq.build_model("ensemble", "resnet_slim", num_classes=3, num_members=3)
    model.eval()
    out = model.predict(X)
    with torch.no_grad():
        x = model.normalize(X)
        member_p = torch.stack([F.softmax(m(x), -1) for m in model.members])
    assert torch.allclose(out["probabilities"], member_p.mean(0), atol=1e-5)
    dec = decompose(member_p)
    for key in ("mutual_information", "expected_entropy", "entropy"):
        assert torch.allclose(out["scores"][key], dec[key], atol=1e-5)
    # members are different networks (initialised with seeds seed + k)
    assert not torch.allclose(member_p[0], member_p[1])
    assert float(out["scores"]["mutual_information"].max()) > 0


def test_batched_and_looped_members_agree_and_track_training() -> None:
    model = tileuq.build_model("ensemble", "resnet_slim", num_classes=3, num_members=3)
    ens = model.core.ensemble
    model.eval()
    with torch.inference_mode():
        x = model.normalize(X)
        f_loop, z_loop = ens.forward_members(x, "looped")
        f_vmap, z_vmap = ens.forward_members(x, "batched")
    assert torch.allclose(z_loop, z_vmap, atol=1e-4)
    assert torch.allclose(f_loop, f_vmap, atol=1e-4)
    # train member 1 one step after stacking: the batched path sees the new weights
    model.train()
    opt = torch.optim.SGD(model.members[1].parameters(), lr=0.5)
    loss = F.cross_entropy(model(X, member=1), torch.zeros(5, dtype=torch.long))
    loss.backward()
    assert all(p.grad is None for p in model.members[0].parameters())  # only member 1
    opt.step()
    model.eval()
    with torch.inference_mode():
        x = model.normalize(X)
        _, z_loop2 = ens.forward_members(x, "looped")
        _, z_vmap2 = ens.forward_members(x, "batched")
    assert not torch.allclose(z_loop2[1], z_loop[1])
    assert torch.allclose(z_loop2, z_vmap2, atol=1e-4)
    assert model(X).shape == (3, 5, 3)


def test_mc_dropout_passes_use_dropout_only() -> None:
    model = tileuq.build_model("mc_dropout", "resnet_slim", num_classes=3, mc_samples=8)
    net = model.members[0]
    model.train()
    with torch.no_grad():
        model(X)  # give BatchNorm non-trivial running statistics
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = model.predict(X)
    assert model.training  # flag restored
    # BatchNorm stayed in eval: running statistics untouched
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    again = model.predict(X)
    assert torch.equal(out["probabilities"], again["probabilities"])  # seeded masks
    assert float(out["scores"]["mutual_information"].min()) > 0  # passes differ
    # equivalent to T explicit passes with the same masks on the (deterministic) features
    model.eval()
    with torch.no_grad():
        feats = net.forward_features(model.normalize(X))
        g = torch.Generator().manual_seed(0)
        keep = torch.rand((8, 1, feats.shape[1]), generator=g) >= 0.5  # one mask per pass
        logits = net.fc(feats * keep / 0.5)
    assert torch.allclose(out["probabilities"], F.softmax(logits, -1).mean(0), atol=1e-5)
    # a tile's prediction does not depend on the other tiles of its batch
    alone = model.predict(X[1:2])
    assert torch.allclose(alone["probabilities"], out["probabilities"][1:2], atol=1e-6)


def test_mc_dropout_with_block_dropout_runs_full_passes() -> None:
    model = tileuq.build_model(
        "mc_dropout", "resnet_slim", num_classes=3, mc_samples=4, drop_rate=0.0, block_drop_rate=0.2
    )
    model.eval()
    out = model.predict(X)
    assert float(out["scores"]["mutual_information"].max()) > 0
    assert not any(m.training for m in model.modules())  # dropout layers back in eval
    single = tileuq.build_model("mc_dropout", "resnet_slim", num_classes=3, mc_samples=1)
    assert bool((single.predict(X)["scores"]["mutual_information"] == 0).all())


def test_bad_ensemble_arguments() -> None:
    with pytest.raises(tileuq.ModelError, match="num_members"):
        tileuq.build_model("ensemble", "resnet_slim", num_classes=2, num_members=0)
    with pytest.raises(tileuq.ModelError, match="ensemble_mode"):
        tileuq.build_model("ensemble", "resnet_slim", num_classes=2, ensemble_mode="fast")
    with pytest.raises(tileuq.ModelError, match="drop_rate"):
        tileuq.build_model("mc_dropout", "resnet_slim", num_classes=2, drop_rate=0.0)
