import json
import numpy as np
import pytest
import torch
import torch.nn as nn

from explain import methods as M
from explain.gradreg import guided_gradient_loss

torch.set_num_threads(1)


class LinearNet(nn.Module):
    """f(x) = W x: every method has a closed form."""

    def __init__(self, h=8, w=8, classes=3, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.fc = nn.Linear(h * w, classes, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.randn(classes, h * w, generator=g))
        self.gradcam_layer = None

    def forward(self, x):
        return self.fc(torch.flatten(x, 1))


class ReluNet(nn.Module):
    def __init__(self, d=16, hidden=12, classes=3, act=None, seed=1):
        super().__init__()
        torch.manual_seed(seed)
        self.fc1, self.act, self.fc2 = nn.Linear(d, hidden), act or nn.ReLU(), nn.Linear(hidden, classes)
        self.gradcam_layer = None

    def forward(self, x):
        return self.fc2(self.act(self.fc1(torch.flatten(x, 1))))

    def activation_modules(self):
        return [self.act]


class Clip(nn.Module):  # an activation captum's GuidedBackprop does not know
    def forward(self, x):
        return torch.clamp(x, -1, 1)


class CamNet(nn.Module):
    """conv (same size) -> global average pool -> linear: GradCAM = ReLU(sum_k v_k/(hw) A_k)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv, self.relu = nn.Conv2d(1, 4, 3, padding=1), nn.ReLU()
        self.fc = nn.Linear(4, 3)
        self.gradcam_layer = self.relu

    def forward(self, x):
        return self.fc(self.relu(self.conv(x)).mean((2, 3)))


@pytest.fixture
def data():
    g = torch.Generator().manual_seed(3)
    return torch.rand(5, 1, 8, 8, generator=g), torch.tensor([0, 1, 2, 1, 0])


def test_gradient_and_smoothgrad_of_linear_model_are_abs_weights(data):
    x, t = data
    net = LinearNet()
    want = net.fc.weight[t].abs().reshape(-1, 8, 8)
    assert torch.allclose(M.attribute("gradient", net, x, t), want, atol=1e-6)
    assert torch.allclose(M.attribute("smoothgrad", net, x, t, samples=8), want, atol=1e-5)


def test_integrated_gradients_is_x_times_w_with_small_delta(data):
    x, t = data
    net = LinearNet()
    maps, info = M.attribute("integrated_gradients", net, x, t, return_info=True)
    assert torch.allclose(maps, (x.reshape(5, -1) * net.fc.weight[t]).reshape(5, 8, 8), atol=1e-5)
    assert info["delta"].abs().max() < 1e-4


def test_occlusion_is_mean_of_window_sums_and_hardware_path_rebuilds_it(data):
    x, t = data
    net = LinearNet()
    maps = M.attribute("occlusion", net, x, t, patch=3, stride=2)
    contrib = (x.reshape(5, -1) * net.fc.weight[t]).reshape(5, 8, 8)
    total, count = torch.zeros(5, 8, 8), torch.zeros(8, 8)
    for i, j in M.occlusion_windows(8, 8, 3, 2):
        total[:, i:i + 3, j:j + 3] += contrib[:, i:i + 3, j:j + 3].sum((1, 2))[:, None, None]
        count[i:i + 3, j:j + 3] += 1
    assert torch.allclose(maps, total / count, atol=1e-5)
    # the hardware check: uint8 NHWC occluded images -> outputs -> the same map
    u8 = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 1), dtype=np.uint8)
    xf = torch.from_numpy(u8.transpose(0, 3, 1, 2).copy()).float() / 256
    occ = M.occlusion_inputs(u8, 3, 2, layout="NHWC")
    assert occ.dtype == np.uint8 and occ.shape == (5 * 16, 8, 8, 1)
    with torch.no_grad():
        base = net(xf)
        occ_out = net(torch.from_numpy(occ.transpose(0, 3, 1, 2).copy()).float() / 256)
    rebuilt = M.occlusion_map(base, occ_out, t, 8, 8, 3, 2)
    assert torch.allclose(rebuilt, M.attribute("occlusion", net, xf, t, patch=3, stride=2), atol=1e-5)
    assert torch.equal(M.occlusion_inputs(xf, 3, 2), torch.from_numpy(occ.transpose(0, 3, 1, 2).copy()).float() / 256)


def test_lrp_epsilon_of_linear_model_is_x_times_w(data):
    x, t = data
    net = LinearNet()
    maps = M.attribute("lrp", net, x, t, rule="epsilon")
    assert torch.allclose(maps, (x.reshape(5, -1) * net.fc.weight[t]).reshape(5, 8, 8), atol=1e-4)


def test_canonization_keeps_outputs_and_changes_lrp(data):
    x, t = data
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.BatchNorm1d(10), nn.ReLU(), nn.Linear(10, 3),
                        nn.BatchNorm1d(3))

    class Wrap(nn.Module):
        def __init__(self):
            super().__init__()
            self.l1, self.bn1, self.act, self.l2, self.bn2 = net[1], net[2], net[3], net[4], net[5]

        def forward(self, x):
            return self.bn2(self.l2(self.act(self.bn1(self.l1(torch.flatten(x, 1))))))

    w = Wrap()
    for bn in (w.bn1, w.bn2):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 2)
    w.eval()
    canon = M.canonize(w)
    assert not any(isinstance(m, nn.BatchNorm1d) for m in canon.modules())
    assert torch.allclose(canon(x), w(x), atol=1e-5)
    # epsilon everywhere: relevance = gradient x input, folding cannot change it
    eps = [M.attribute("lrp", w, x, t, canonized=c, rule="epsilon") for c in (False, True)]
    assert torch.allclose(eps[0], eps[1], atol=1e-4)
    before = M.attribute("lrp", w, x, t, canonized=False, rule="alpha1beta0")
    after = M.attribute("lrp", w, x, t, canonized=True, rule="alpha1beta0")
    assert before.shape == after.shape == (5, 8, 8) and torch.isfinite(after).all()
    assert not torch.allclose(before, after, atol=1e-3)


def test_guided_backprop_closed_form_for_relu_and_custom_activation(data):
    x, t = data
    x = x[:, :, :4, :4]
    for act in (None, Clip()):
        net = ReluNet(act=act).eval()
        pre = net.fc1(torch.flatten(x, 1))
        if act is None:
            gate = (pre > 0).float()
        else:
            gate = (pre.abs() < 1).float()
        v = net.fc2.weight[t].clamp(min=0)  # guided: only positive gradients flow back
        want = ((gate * v) @ net.fc1.weight).abs().reshape(-1, 4, 4)
        got = M.attribute("guided_backprop", net, x, t)
        assert torch.allclose(got, want, atol=1e-5)
        plain = M.attribute("gradient", net, x, t)
        assert not torch.allclose(got, plain, atol=1e-4)


def test_guided_backprop_uses_set_guided_when_model_has_it(data):
    x, t = data
    net = LinearNet()
    calls = []
    net.set_guided = lambda on: calls.append(on)
    M.attribute("guided_backprop", net, x, t)
    assert calls == [True, False]


def test_gradcam_closed_form_and_not_applicable_on_mlp(data):
    x, t = data
    net = CamNet().eval()
    a = net.relu(net.conv(x))
    alpha = net.fc.weight[t] / 64
    want = torch.relu((alpha[:, :, None, None] * a).sum(1))
    assert torch.allclose(M.attribute("gradcam", net, x, t), want, atol=1e-6)
    with pytest.raises(M.NotApplicable, match="MLP"):
        M.attribute("gradcam", LinearNet(), x, t)


def test_neuromask_keeps_the_informative_pixels():
    class Informative(nn.Module):
        # class 0 wins only while the 2x2 informative block is visible
        def forward(self, x):
            s = x[:, 0, 2:4, 2:4].sum((1, 2))
            return torch.stack([20 * s, torch.full_like(s, 20.0)], 1)

    x = torch.ones(2, 1, 8, 8)
    mask = M.attribute("neuromask", Informative(), x, 0, steps=1000)
    top4 = {divmod(int(i), 8) for i in mask[0].flatten().argsort(descending=True)[:4]}
    assert top4 == {(2, 2), (2, 3), (3, 2), (3, 3)}
    inside = mask[:, 2:4, 2:4].mean()
    outside = (mask.sum((1, 2)) - mask[:, 2:4, 2:4].sum((1, 2))).mean() / 60
    assert inside > 2 * outside, (inside, outside)


def test_bad_inputs_raise_clear_errors(data):
    x, t = data
    with pytest.raises(M.ExplainError, match="unknown method"):
        M.attribute("saliency", LinearNet(), x, t)
    with pytest.raises(M.ExplainError, match="target"):
        M.attribute("gradient", LinearNet(), x, torch.tensor([0, 1]))
    with pytest.raises(M.ExplainError, match="unknown option"):
        M.attribute("gradient", LinearNet(), x, t, samples=3)


def test_guided_gradient_loss_is_differentiable_and_zero_without_negative_gradients(data):
    x, t = data
    x = x[:, :, :4, :4]
    net = ReluNet().train()
    bn_free_loss = guided_gradient_loss(net, x, t, [net.act])
    assert 0 <= bn_free_loss.item() <= 2
    grads = torch.autograd.grad(bn_free_loss, [net.fc1.weight, net.fc2.weight], allow_unused=True)
    assert grads[1] is not None and grads[1].abs().sum() > 0
    with torch.no_grad():  # all-positive output weights: guided == plain, R == 0
        net.fc2.weight.abs_()
    assert guided_gradient_loss(net, x, t, [net.act]).item() < 1e-6


def test_guided_gradient_loss_on_a_brevitas_bnn_keeps_batchnorm_statistics():
    from model import zoo
    net = zoo.build("tfc-w1a1").train()
    x, y = torch.rand(8, 1, 28, 28), torch.arange(8)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d)]
    before = [(m.running_mean.clone(), m.num_batches_tracked.clone()) for m in bns]
    loss = guided_gradient_loss(net, x, y, net.activation_modules())
    loss.backward()
    assert 0 < loss.item() <= 2
    assert net.head.weight.grad is not None and net.head.weight.grad.abs().sum() > 0
    for m, (mu, nb) in zip(bns, before):
        assert torch.equal(m.running_mean, mu) and torch.equal(m.num_batches_tracked, nb)


def test_gradreg_study_compares_plain_and_regularised(tmp_path):
    """A tiny schedule stands in for the real one: the study trains plain and regularised BNN and
    twin, measures the BNN on its streamlined reference, and writes every comparison."""
    from explain import gradreg_study as G
    from explain.report import _gradreg_context, gradreg_study
    from model.reference import Reference
    doc, path = G.run("tfc-w1a1", lam=0.5, n_images=8, root=tmp_path, steps=4, progress=False, epochs=1, limit=300)
    base = tmp_path / "gradreg"
    assert path == base / "tfc-w1a1" / "study.json" and path.is_file()
    assert isinstance(G._reference_of("tfc-w1a1", base / "tfc-w1a1" / "gradreg"), Reference)
    assert doc["kinds"]["bnn"]["measured_on"] == "bit-exact reference"
    for kind in ("bnn", "fp"):
        k = doc["kinds"][kind]
        for m in ("cosine_gradient_vs_guided", "total_variation", "deletion_auc", "insertion_auc"):
            assert 0 <= k[m]["plain"]["mean"] <= 1 and 0 <= k[m]["gradreg"]["mean"] <= 1
            assert 0 <= k[m]["p_wilcoxon"] <= 1
        assert k["test_accuracy"]["gradreg"] is not None
    assert json.loads((base / "tfc-fp" / "gradreg" / "train.json").read_text())["gradreg"] == 0.5
    assert gradreg_study("tfc-w1a1", tmp_path) == json.loads(path.read_text())
    rows = _gradreg_context(json.loads(path.read_text()))["rows"]
    assert sum(r["model"] == "tfc-fp" for r in rows) == 6 and {r["metric"] for r in rows} >= {"test accuracy"}
    plain = torch.load(base / "tfc-fp" / "plain" / "model.pt", weights_only=True)["state_dict"]
    reg = torch.load(base / "tfc-fp" / "gradreg" / "model.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(plain[k], reg[k]) for k in plain if plain[k].is_floating_point())
    # another schedule retrains, and the BNN is measured on the retrained model's graph
    graph = base / "tfc-w1a1" / "plain" / "streamlined.onnx"
    before = graph.read_bytes()
    G.run("tfc-w1a1", lam=0.5, n_images=8, root=tmp_path, steps=4, progress=False, epochs=1, limit=400)
    assert graph.read_bytes() != before
