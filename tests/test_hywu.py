"""HY-WU: the per-instance operator, the generators, the functional memory and the strategy."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from hywu_bench.data import ExperienceInfo, ExperienceTensors, ScenarioInfo, make_scenario
from hywu_bench.models import build_backbone
from hywu_bench.training import quiet_evaluator
from strategies.hywu.generator import ARCHITECTURES, GeneratorConfig, build_generator, delta_distance, delta_gram
from strategies.hywu.strategy import HYWUOptions, HYWUStrategy, resolve_condition
from strategies.lowrank import LowRankConv2d, LowRankLinear, inject, site_shapes, use_factors

SHAPE = (1, 8, 8)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)  # (conftest runs every test on one torch thread)


# -- operator ----------------------------------------------------------------------------------------


def test_linear_batch_equals_each_instance_through_its_merged_linear():
    base = nn.Linear(7, 5)
    site = LowRankLinear(base, rank=3, alpha=6.0)
    x, A, B = torch.randn(4, 7), torch.randn(4, 3, 7), torch.randn(4, 5, 3)
    with use_factors({"fc": site}, {"fc": (A, B)}):
        y = site(x)  # (4, 5)
        y_seq = site(x[:, None].expand(4, 6, 7))  # (4, 6, 5): a sequence per instance
    for i in range(4):
        merged = nn.Linear(7, 5)
        merged.weight.data = base.weight + site.scaling * B[i] @ A[i]
        merged.bias.data = base.bias.clone()
        torch.testing.assert_close(y[i], merged(x[i]), atol=1e-5, rtol=0)
        torch.testing.assert_close(y_seq[i], merged(x[i]).expand(6, 5), atol=1e-5, rtol=0)


def test_shared_factors_and_gates_equal_merged_weights():
    base = nn.Linear(7, 5)
    site = LowRankLinear(base, rank=3, alpha=3.0)
    x, A, B, gate = torch.randn(4, 7), torch.randn(3, 7), torch.randn(5, 3), torch.rand(4, 3)
    with use_factors({"fc": site}, {"fc": (A, B, gate)}):
        y = site(x)
    for i in range(4):
        w = base.weight + site.scaling * (B * gate[i]) @ A
        torch.testing.assert_close(y[i], F.linear(x[i], w, base.bias), atol=1e-5, rtol=0)


@pytest.mark.parametrize("stride,padding", [(1, 1), (2, 0)])
def test_conv_batch_equals_each_instance_through_its_merged_conv(stride, padding):
    base = nn.Conv2d(3, 6, 3, stride=stride, padding=padding)
    site = LowRankConv2d(base, rank=2, alpha=4.0)
    x, A, B = torch.randn(4, 3, 9, 9), 0.3 * torch.randn(4, 2, 27), 0.3 * torch.randn(4, 6, 2)
    assert site_shapes({"c": site}) == {"c": (27, 6)}
    with use_factors({"c": site}, {"c": (A, B)}):
        y = site(x)
    for i in range(4):
        w = base.weight + site.delta_weight(A[i], B[i])
        ref = F.conv2d(x[i:i + 1], w, base.bias, stride, padding)
        torch.testing.assert_close(y[i:i + 1], ref, atol=1e-5, rtol=0)


def test_zero_B_gives_the_base_output_exactly():
    lin, conv = nn.Linear(7, 5), nn.Conv2d(3, 4, 3, padding=1)
    sites = {"lin": LowRankLinear(lin, 2, 4.0), "conv": LowRankConv2d(conv, 2, 4.0)}
    x, xc = torch.randn(3, 7), torch.randn(3, 3, 6, 6)
    factors = {"lin": (torch.randn(3, 2, 7), torch.zeros(3, 5, 2)),
               "conv": (torch.randn(3, 2, 27), torch.zeros(3, 4, 2))}
    with use_factors(sites, factors):
        assert torch.equal(sites["lin"](x), lin(x))
        assert torch.equal(sites["conv"](xc), conv(xc))
    assert torch.equal(sites["lin"](x), lin(x))  # no factors set: the base output


def test_inject_replaces_by_pattern_and_reports_unmatched():
    model = build_backbone("cnn", (1, 28, 28), 10, seed=0)
    sites = inject(model, ["conv*"], rank=2, alpha=4.0)
    assert list(sites) == ["conv1", "conv2"] and isinstance(model.conv1, LowRankConv2d)
    assert "LowRankConv2d" in repr(model)
    with pytest.raises(ValueError, match="fc9.*available: fc1, head"):
        inject(model, ["fc9"], rank=2, alpha=4.0)
    with pytest.raises(ValueError, match="already wrapped"):
        inject(model, ["conv1"], rank=2, alpha=4.0)


def test_factors_are_cleared_after_an_exception():
    site = LowRankLinear(nn.Linear(4, 3), 2, 2.0)
    with pytest.raises(RuntimeError, match="boom"):
        with use_factors({"fc": site}, {"fc": (torch.randn(2, 2, 4), torch.randn(2, 3, 2))}):
            raise RuntimeError("boom")
    assert site.lora_A is None and site.lora_B is None and site.lora_scale is None


# -- generators ----------------------------------------------------------------------------------------


def _dense(f, i, scaling):
    A = f[0] if f[0].dim() == 2 else f[0][i]
    B = f[1] if f[1].dim() == 2 else f[1][i]
    gate = f[2][i] if len(f) == 3 else torch.ones(A.shape[0])
    return scaling * (B * gate) @ A


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_generators_start_at_zero_and_gram_distances_are_exact(arch):
    shapes = {"fc1": (20, 12), "fc2": (12, 12)}
    gen = build_generator(6, shapes, GeneratorConfig(arch=arch, rank=2, hidden=16, bank_size=3, tile=8,
                                                     width=16, heads=2, depth=1))
    c = torch.randn(5, 6)
    before = gen(c)
    assert all(_dense(before[s], i, 1.0).abs().max() == 0 for s in shapes for i in range(5))
    with torch.no_grad():
        for p in gen.parameters():
            p.add_(0.1 * torch.randn_like(p))
    after = gen(c)
    for s in shapes:
        want = torch.stack([((_dense(after[s], i, 2.0) - _dense(before[s], i, 2.0)) ** 2).sum() for i in range(5)])
        torch.testing.assert_close(delta_distance(after[s], before[s], 2.0), want, rtol=1e-4, atol=1e-6)
        gram = torch.stack([torch.stack([(_dense(after[s], i, 1.0) * _dense(after[s], j, 1.0)).sum()
                                         for j in range(5)]) for i in range(5)])
        torch.testing.assert_close(delta_gram(after[s]), gram, rtol=1e-4, atol=1e-6)
    packed, index = gen.pack(before), torch.tensor([4, 1])
    scaling = {s: 2.0 for s in shapes}
    want = sum(delta_distance(after[s], before[s], 2.0) for s in shapes)[index]
    got = gen.distance({s: tuple(t[index] if t.dim() == f_dim else t for t, f_dim in zip(f, (3, 3, 2)))
                        for s, f in after.items()}, packed, index, scaling)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


# -- the strategy ----------------------------------------------------------------------------------------


def _stream(n_exp=2, n=48):
    """Tiny class-incremental stream on 8x8 inputs, as an Avalanche benchmark of tensors."""
    from hywu_bench.data import ExperienceInfo, ExperienceTensors, ScenarioInfo, make_scenario

    train, test, infos = [], [], []
    for e in range(n_exp):
        classes = (2 * e, 2 * e + 1)
        y = torch.tensor(classes).repeat(n // 2)
        x = torch.rand(n, *SHAPE) + y.view(-1, 1, 1, 1) / 10
        train.append(ExperienceTensors(x, y))
        test.append(ExperienceTensors(x[:16], y[:16]))
        infos.append(ExperienceInfo(e, classes, "fake", n_train=n, n_test=16))
    info = ScenarioInfo("fake", "class", 2 * n_exp, SHAPE, tuple(infos))
    return make_scenario(train, test, info)


def _strategy(warm_started: bool = True, **options) -> HYWUStrategy:
    model = build_backbone("mlp", SHAPE, 4, seed=0)
    opts = HYWUOptions(**{"anchors_per_experience": 20, "anchors_per_step": 8, "hidden": 16, "bank_size": 4,
                          **options})
    return HYWUStrategy(model=model, options=opts, input_shape=SHAPE, train_mb_size=16, train_epochs=1,
                        eval_mb_size=64, device="cpu", evaluator=quiet_evaluator(), warm_started=warm_started)


@pytest.mark.parametrize("generator", ["bank", "mlp"])
def test_regulariser_is_zero_after_a_snapshot_and_grows_when_the_generator_moves(generator):
    strategy = _strategy(generator=generator, beta=1.0)
    scenario = _stream()
    strategy.train(scenario.train_stream[0])  # stores anchors, snapshots
    index = torch.arange(len(strategy.memory))
    assert len(index) == 20

    def regulariser() -> float:
        raw = strategy.memory.raw(index, "cpu")
        return float(strategy.regulariser(strategy.model.generate(raw), index))

    assert regulariser() == pytest.approx(0.0, abs=1e-5)
    values = []
    for step in (0.01, 0.02):
        with torch.no_grad():
            for p in strategy.model.generator.parameters():
                p.add_(step * torch.ones_like(p))
        values.append(regulariser())
    assert 0 < values[0] < values[1]


@pytest.mark.parametrize("trainable", [(), ("head",)])
def test_base_is_unchanged_across_an_experience_and_the_generator_learns(trainable):
    strategy = _strategy(beta=1.0, trainable=trainable)
    scenario = _stream()
    base = strategy.model.base
    before = {k: v.clone() for k, v in base.state_dict().items()}
    generator = copy.deepcopy(strategy.model.generator.state_dict())
    for exp in scenario.train_stream:
        strategy.train(exp)
    after = base.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith(trainable))
    assert all(not torch.equal(before[k], after[k]) for k in before if trainable and k.startswith(trainable))
    assert any(not torch.equal(generator[k], v) for k, v in strategy.model.generator.state_dict().items())
    assert strategy.stored_memory_bytes() == strategy.memory.nbytes() > 0
    assert strategy.memory_report()["anchor_kind"] == "embeddings"


def test_inline_condition_equals_a_separate_features_pass():
    strategy = _strategy(sites=("fc1", "fc2"), condition_layer="fc1")
    with torch.no_grad():
        for p in strategy.model.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(5, *SHAPE)
    model = strategy.model.eval()
    inline = model(x)
    assert model._inline is True
    model._inline = False
    torch.testing.assert_close(model(x), inline, atol=1e-6, rtol=0)
    model._inline = True
    seen = []
    handle = model.sites["fc1"].register_forward_pre_hook(lambda m, i: seen.append(m.lora_A is not None))
    torch.testing.assert_close(model(x), inline, atol=1e-6, rtol=0)  # watched: factors set before fc1 runs
    handle.remove()
    assert seen[-1] is True  # (the features pass before it runs fc1 without factors)


def test_state_round_trips_with_anchors_and_snapshot(tmp_path):
    strategy = _strategy(beta=1.0)
    scenario = _stream()
    for exp in scenario.train_stream:
        strategy.train(exp)
    torch.save(strategy.state_dict(), tmp_path / "hywu.pt")
    other = _strategy(beta=1.0)
    other.load_state_dict(torch.load(tmp_path / "hywu.pt", weights_only=True))
    x = torch.rand(6, *SHAPE)
    strategy.model.eval(), other.model.eval()
    torch.testing.assert_close(other.model(x), strategy.model(x))
    assert all(torch.equal(other.memory.anchors[k], v) for k, v in strategy.memory.anchors.items())
    index = torch.arange(len(strategy.memory))
    raw = strategy.memory.raw(index, "cpu")
    assert float(other.regulariser(other.model.generate(raw), index)) == pytest.approx(0.0, abs=1e-5)


@pytest.mark.parametrize("condition,kind", [("input", "raw-derived"), ("task", "task labels"),
                                            ("features+task", "embeddings+task labels")])
def test_other_conditions_train_and_label_their_anchors(condition, kind):
    strategy = _strategy(condition=condition, anti_collapse=0.1)
    for exp in _stream().train_stream:
        strategy.train(exp)
    assert strategy.memory_report()["anchor_kind"] == kind
    rehearsed = "features" in condition  # features read at fc1 can be run on; inputs and task ids cannot
    assert (strategy.last_anchor_loss is not None) == rehearsed
    assert (strategy.last_regulariser is not None) == (not rehearsed)  # the regulariser where rehearsal cannot go
    assert float(strategy.last_anchor_loss if rehearsed else strategy.last_regulariser) >= 0
    factors = strategy.model.generate(strategy.memory.raw(torch.arange(6), "cpu"))
    assert 0 <= float(strategy.collapse_penalty(factors)) <= 1 + 1e-5  # 1: all updates parallel


def test_bad_sites_layers_and_trainables_name_the_valid_ones():
    with pytest.raises(ValueError, match="available: fc1, fc2, head"):
        _strategy(sites=("fc9",))
    with pytest.raises(ValueError, match="condition layer 'fc7'.*fc1"):
        _strategy(condition_layer="fc7")
    with pytest.raises(ValueError, match="trainable modules.*fc1, fc2, head"):
        _strategy(trainable=("heads",))


def test_condition_tokens_are_used_by_default_when_the_scenario_has_them():
    assert resolve_condition(HYWUOptions(), condition_dim=0) == "features"
    assert resolve_condition(HYWUOptions(), condition_dim=3) == "features+token"
    with pytest.raises(ValueError, match="unknown kind"):
        HYWUOptions(condition="features+user")


def test_plain_avalanche_script_with_nc_benchmark():
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.evaluation.metrics import accuracy_metrics
    from avalanche.training.plugins import EvaluationPlugin

    x, y = torch.rand(120, *SHAPE), torch.arange(4).repeat(30)
    x = x + y.view(-1, 1, 1, 1) / 4
    train = _make_taskaware_tensor_classification_dataset(x, y, targets=y)
    test = _make_taskaware_tensor_classification_dataset(x[:40], y[:40], targets=y[:40])
    benchmark = nc_benchmark(train, test, n_experiences=2, task_labels=False, seed=0)
    model = build_backbone("mlp", SHAPE, 4, seed=0)
    strategy = HYWUStrategy(model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
                            train_mb_size=16, train_epochs=2, device="cpu", plugins=[],
                            evaluator=EvaluationPlugin(accuracy_metrics(stream=True), loggers=[]),
                            options=HYWUOptions(anchors_per_experience=10, hidden=16))
    for exp in benchmark.train_stream:
        strategy.train(exp)
    metrics = strategy.eval(benchmark.test_stream)
    accuracy = [v for k, v in metrics.items() if k.startswith("Top1_Acc_Stream")]
    assert accuracy and 0.0 <= accuracy[0] <= 1.0
    assert len(strategy.memory) == 20


def test_a_short_run_on_split_digits(tmp_path):
    from hywu_bench.config import resolve_spec
    from hywu_bench.runner import run

    record = run(resolve_spec(flags=dict(strategy="hywu", epochs=1)), out=tmp_path)
    assert record.R.shape == (5, 5)
    assert not torch.isnan(torch.tensor(record.R)).any()
    assert record.metrics["stored_memory_bytes"] > 0


# -- layout, rehearsal, stored memory --------------------------------------------------------------------


def test_layout_condition_layer_frozen_later_layers_and_the_head_adapted():
    from strategies.hywu.model import resolve_layout

    mlp = build_backbone("mlp", SHAPE, 4, seed=0)
    assert resolve_layout(mlp, (), True, "auto") == (("fc2", "head"), "fc1")
    assert resolve_layout(mlp, (), False, "auto") == (("fc2",), "fc1")
    assert resolve_layout(mlp, ("fc1", "fc2"), False, "auto") == (("fc1", "fc2"), "auto")  # as given
    cnn = build_backbone("cnn", (1, 28, 28), 4, seed=0)  # the first Linear: flat anchors, rehearsable
    assert resolve_layout(cnn, (), True, "auto") == (("head",), "fc1")
    assert resolve_layout(cnn, (), True, "conv1") == (("conv2", "fc1", "head"), "conv1")
    resnet = build_backbone("resnet18", (3, 32, 32), 4, seed=0)  # no hidden Linear: the head's input
    assert resolve_layout(resnet, (), True, "auto") == (("head",), "penultimate")
    assert resolve_layout(resnet, (), True, "layer4.0.conv2") == (("layer4.1.conv1", "layer4.1.conv2", "head"),
                                                                 "layer4.0.conv2")
    plain = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Linear(8, 4))
    assert resolve_layout(plain, (), True, "auto") == (("3",), "1")
    with pytest.raises(ValueError, match="no adapter sites.*after the condition layer '1'"):
        resolve_layout(plain, (), False, "auto")


def test_rehearsed_anchors_get_the_logits_of_the_instances_they_came_from():
    strategy = _strategy(anchor_dtype="float32")
    model = strategy.model.eval()
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x, other = torch.rand(5, *SHAPE), torch.rand(3, *SHAPE)
    assert model.rehearsable(x)
    extra = model.condition_raw(other)
    with torch.no_grad():
        out = model(x, extra=extra, rehearse=True)  # (5 + 3, 4)
        torch.testing.assert_close(out[:5], model(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(out[5:], model(other), atol=1e-5, rtol=0)


def test_a_convolutional_model_rehearses_through_its_head_reading_the_head_input():
    """Without a hidden Linear the condition is the head's input ('penultimate'), read in the same pass; the
    head alone is adapted, and anchors run through it. A feature map read earlier is not rehearsable."""
    from strategies.hywu.model import HYWUModel, resolve_layout

    def convnet():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 4))

    assert resolve_layout(convnet(), (), True, "auto") == (("6",), "penultimate")
    assert resolve_layout(convnet(), (), True, "0") == (("2", "6"), "0")
    x, other = torch.rand(5, *SHAPE), torch.rand(3, *SHAPE)
    assert not HYWUModel(convnet(), head=True, condition_layer="0").rehearsable(x)
    model = HYWUModel(convnet(), head=True, rank=1,
                      generator=GeneratorConfig(arch="bank", rank=1, bank_size=4, hidden=8)).eval()
    torch.testing.assert_close(model.condition.reader(x), model.base[:6](x))  # the head's input
    assert model.head_only and model.rehearsable(x) and model._can_read_inline(x)
    with torch.no_grad():
        for p in model.generator.parameters():
            p.add_(0.05 * torch.randn_like(p))
        out = model(x, extra=model.condition_raw(other), rehearse=True)  # (5 + 3, 4)
        torch.testing.assert_close(out[:5], model(x), atol=1e-5, rtol=0)
        torch.testing.assert_close(out[5:], model(other), atol=1e-5, rtol=0)
        assert not torch.allclose(model(x), model.base(x))  # the generated update does act (and was cleared)


def test_a_path_around_the_condition_layer_makes_a_model_not_rehearsable():
    class Skip(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2, self.head = nn.Linear(64, 16), nn.Linear(16, 64), nn.Linear(64, 4)

        def forward(self, x):
            x = x.flatten(1)
            return self.head(torch.relu(self.fc2(torch.relu(self.fc1(x)))) + x)  # x skips fc1

    opts = HYWUOptions(anchors_per_experience=20, anchors_per_step=8, hidden=16, bank_size=4)
    strategy = HYWUStrategy(model=Skip(), options=opts, train_mb_size=16, train_epochs=1, device="cpu",
                            evaluator=quiet_evaluator(), warm_started=True)
    assert not strategy.model.rehearsable(torch.rand(4, *SHAPE))
    for exp in _stream().train_stream:
        strategy.train(exp)
    assert strategy.last_anchor_loss is None and strategy.last_regulariser is not None  # the regulariser alone


@pytest.mark.parametrize("dtype,bytes_per_number", [("float32", 4), ("float16", 2), ("int8", 1)])
def test_anchors_are_stored_small_and_decoded_within_half_a_step(dtype, bytes_per_number):
    from strategies.hywu.memory import FunctionalMemory

    memory = FunctionalMemory(anchor_dtype=dtype)
    v, token = 3 * torch.randn(10, 32), torch.eye(4)[torch.arange(10) % 4]
    memory.add({"features": v, "token": token}, labels=torch.arange(10))
    got = memory.raw(torch.arange(10), "cpu")
    step = v.abs().amax(1, keepdim=True) / 127
    tolerance = {"float32": 0.0, "float16": 2e-3 * v.abs().max(), "int8": 0}
    assert ((got["features"] - v).abs() <= (step / 2 + 1e-6 if dtype == "int8" else tolerance[dtype])).all()
    assert (got["token"] - token).abs().max() < 1e-3 and got["features"].dtype == torch.float32
    scales = 10 * 2 * 2 if dtype == "int8" else 0  # a float16 scale per anchor and float kind
    assert memory.anchor_bytes() == 10 * (32 + 4) * bytes_per_number + scales + 10 * 2  # + int16 labels
    assert memory.labels_of(torch.tensor([3, 7]), "cpu").tolist() == [3, 7]


def test_herding_fills_each_class_by_its_share_near_its_mean():
    from strategies.hywu.memory import herding

    features = torch.randn(300, 8) + torch.arange(3).repeat_interleave(100)[:, None]
    labels = torch.arange(3).repeat_interleave(100)
    labels[:50] = 1  # class 0: 50, class 1: 150, class 2: 100
    keep = herding(features, labels, 12)
    assert len(keep) == len(set(keep.tolist())) == 12
    assert torch.bincount(labels[keep], minlength=3).tolist() == [2, 6, 4]
    f = F.normalize(features, dim=1)
    for c in range(3):
        chosen, everyone = f[keep[labels[keep] == c]], f[labels == c]
        random_gap = (everyone[:len(chosen)].mean(0) - everyone.mean(0)).norm()
        assert (chosen.mean(0) - everyone.mean(0)).norm() < random_gap


def test_without_a_warm_start_the_base_learns_first_and_a_loaded_state_resumes_frozen(tmp_path):
    strategy = _strategy(warm_started=False)
    scenario = _stream()
    before = {k: v.clone() for k, v in strategy.model.base.state_dict().items()}
    strategy.train(scenario.train_stream[0])
    assert not strategy.training_base and bool(strategy.model.base_frozen)
    assert any(not torch.equal(before[k], v) for k, v in strategy.model.base.state_dict().items())
    torch.save(strategy.state_dict(), tmp_path / "hywu.pt")
    other = _strategy(warm_started=False)
    assert other.training_base
    other.load_state_dict(torch.load(tmp_path / "hywu.pt", weights_only=True))
    assert not other.training_base and not any(p.requires_grad for p in other.model.base.parameters())


def test_a_run_without_the_shared_warm_start_learns_every_experience(tmp_path):
    from hywu_bench.config import resolve_spec
    from hywu_bench.runner import run

    record = run(resolve_spec(flags=dict(strategy="hywu", warm_start=False)), out=tmp_path)
    assert min(record.R[j, j] for j in range(5)) > 0.5, record.R  # the base learnt experience 0 itself


def test_a_cnn_reads_its_condition_at_its_hidden_linear_and_rehearses():
    model = build_backbone("cnn", SHAPE, 4, seed=0)
    strategy = HYWUStrategy(model=model, options=HYWUOptions(hidden=16, bank_size=4), warm_started=True,
                            evaluator=quiet_evaluator(), device="cpu")
    assert list(strategy.model.sites) == ["head"] and strategy.model.condition.reader.layer == "fc1"
    assert strategy.model.rehearsable(torch.rand(4, *SHAPE)) and strategy.beta == 0.0


@pytest.mark.parametrize("backbone, options, expected", [
    ("cnn", {}, (2.0, 1.0)),  # the bank generates the head alone: rehearsal 2 and the balance term
    ("mlp", {}, (1.0, 0.0)),  # fc2 and the head
    ("cnn", {"generator": "mlp"}, (1.0, 0.0)),  # no bank, no router to collapse
    ("cnn", {"sites": ("conv2",), "condition_layer": "conv1"}, (1.0, 0.0)),  # conv2 and the head
    ("cnn", {"rehearsal": 0.5, "balance": 0.0}, (0.5, 0.0)),  # the user's values win
    ("mlp", {"sites": (), "head": True, "condition_layer": "fc2", "balance": 3.0}, (2.0, 3.0)),  # head alone
])
def test_rehearsal_and_balance_default_by_layout(backbone, options, expected):
    model = build_backbone(backbone, SHAPE, 4, seed=0)
    strategy = HYWUStrategy(model=model, options=HYWUOptions(hidden=16, bank_size=4, **options), warm_started=True,
                            evaluator=quiet_evaluator(), device="cpu")
    assert (strategy.rehearsal, strategy.balance) == expected, list(strategy.model.sites)


def test_the_resnet_reads_its_head_input_and_rehearses_with_the_head_only_weights():
    """The reduced ResNet-18 has no hidden Linear: the head's input is the condition, the head the only site,
    and training rehearses anchors there (not the regulariser), with rehearsal 2 and the balance term."""
    shape = (3, 8, 8)
    model = build_backbone("resnet18", shape, 4, seed=0)
    opts = HYWUOptions(anchors_per_experience=20, anchors_per_step=8, hidden=16, bank_size=4)
    strategy = HYWUStrategy(model=model, options=opts, train_mb_size=16, train_epochs=1, device="cpu",
                            evaluator=quiet_evaluator(), warm_started=True)
    assert list(strategy.model.sites) == ["head"] and strategy.model.condition.reader.layer == "penultimate"
    assert (strategy.rehearsal, strategy.balance) == (2.0, 1.0)
    train = [ExperienceTensors(torch.rand(32, *shape), torch.tensor([2 * e, 2 * e + 1]).repeat(16))
             for e in range(2)]
    info = ScenarioInfo("fake", "class", 4, shape, tuple(ExperienceInfo(e, (2 * e, 2 * e + 1), "fake", 32, 32)
                                                        for e in range(2)))
    for exp in make_scenario(train, train, info).train_stream:
        strategy.train(exp)
    assert strategy.model.rehearsable() and strategy.beta == 0.0
    assert strategy.last_anchor_loss is not None and strategy.last_regulariser is None


def test_a_run_without_the_shared_warm_start_resumes_exactly_after_a_crash(tmp_path, crash_after_second_experience):
    """The checkpoint after experience 1 was written with the generator's optimizer: a fresh strategy (still
    in its base phase) must switch before the optimizer state is loaded."""
    from hywu_bench.config import resolve_spec
    from hywu_bench.runner import run

    def spec():
        return resolve_spec(flags=dict(strategy="hywu", epochs=2, warm_start=False))

    crash_after_second_experience(spec(), tmp_path / "crashed")
    resumed = run(spec(), tmp_path / "crashed", resume=True)
    assert (resumed.R == run(spec(), tmp_path / "reference").R).all()


def test_the_banks_imbalance_is_zero_when_bases_are_shared_and_log_k_when_one_takes_all():
    """KL(mean mixing || uniform), by hand: 0 for instances spread evenly over the bases (each instance may
    still pick one), log K when every instance picks the same basis; for gates repeated r times too."""
    import math

    gen = build_generator(5, {"fc": (3, 2)}, GeneratorConfig(arch="bank", rank=2, hidden=8, bank_size=4))
    one_hot = 4 * torch.eye(4)  # 4 instances, each all on its own basis: the mean is uniform
    assert gen.imbalance({"fc": (None, None, one_hot)}).item() == pytest.approx(0.0, abs=1e-6)
    collapsed = 4 * F.one_hot(torch.full((6,), 2), 4).float()  # every instance on basis 2
    assert gen.imbalance({"fc": (None, None, collapsed)}).item() == pytest.approx(math.log(4))
    repeated = collapsed.repeat_interleave(2, dim=-1)  # forward's form: each gate entry r = 2 times
    assert gen.imbalance({"fc": (None, None, repeated)}).item() == pytest.approx(math.log(4))
    half = 4 * torch.tensor([[0.5, 0.5, 0.0, 0.0]])  # mean (1/2, 1/2, 0, 0): KL = log 2
    assert gen.imbalance({"fc": (None, None, half)}).item() == pytest.approx(math.log(2))


def test_balance_needs_the_bank():
    with pytest.raises(ValueError, match="balance weighs the bank's mixing; generator='mlp'"):
        HYWUOptions(generator="mlp", balance=1.0)
