"""Interference probes: exact on hand-checkable cases, on real strategies, and stored as JSON."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from hywu_bench import figures, interference, tables
from hywu_bench.data import ExperienceInfo, ExperienceTensors, ScenarioInfo, make_scenario


def toy_scenario(T: int = 3, n: int = 40, d: int = 6, classes: int = 4) -> tuple:
    g = torch.Generator().manual_seed(0)
    parts = [ExperienceTensors(torch.randn(n, d, generator=g), torch.randint(0, classes, (n,), generator=g))
             for _ in range(T)]
    info = ScenarioInfo("toy", "domain", classes, (d,), tuple(ExperienceInfo(k, tuple(range(classes)), "toy")
                                                                for k in range(T)))
    return make_scenario(parts, parts, info), parts


class LinearStrategy:
    """The duck type the probes need: model, optimizer, mbatch and forward()."""

    def __init__(self, model: nn.Module):
        self.model, self.mbatch = model, None
        self.optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)

    def forward(self) -> torch.Tensor:
        return self.model(self.mbatch[0])


def test_gradient_conflict_equals_cosines_of_hand_computed_gradients() -> None:
    scenario, parts = toy_scenario()
    model = nn.Linear(6, 4)
    out = interference.probe(LinearStrategy(model), scenario, None, n_samples=40)
    grads = []
    for part in parts:  # n_samples = the whole experience, so the sample is every instance
        model.zero_grad()
        nn.functional.cross_entropy(model(part.x), part.y).backward()
        grads.append(torch.cat([model.weight.grad.flatten(), model.bias.grad]))
    G = torch.stack(grads)
    expected = torch.nn.functional.cosine_similarity(G[:, None], G[None], dim=-1)
    assert np.allclose(out["gradient_conflict_own_parameters"], expected.numpy(), atol=1e-5)
    assert out["parameters"] == 28 and out["experiences"] == 3
    assert "operator_separation" not in out  # a plain model generates no updates
    assert "gradient_conflict_shared_lora" not in out  # a bare Linear has no backbone site to put it on


def test_logit_gradient_conflict_by_hand() -> None:
    """With zero weights every softmax is uniform, so instance k's logit gradient is 1/4 - onehot(y_k): the
    same label gives cosine 1, two labels a != b give (4/16 - 1/4 - 1/4) / (3/4) = -1/3; then the mean over
    the positions k."""
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(3))
    labels = [torch.zeros(8, dtype=torch.long), torch.ones(8, dtype=torch.long), torch.tensor([0, 1] * 4)]
    info = ScenarioInfo("toy", "domain", 4, (6,), tuple(ExperienceInfo(k, (0, 1, 2, 3), "toy") for k in range(3)))
    scenario = make_scenario([ExperienceTensors(x, y) for y in labels], [ExperienceTensors(x, y) for y in labels], info)
    model = nn.Linear(6, 4)
    nn.init.zeros_(model.weight), nn.init.zeros_(model.bias)
    cos = interference.probe(LinearStrategy(model), scenario, None, n_samples=8)["gradient_conflict_logits"]
    assert cos[0][1] == pytest.approx(-1 / 3, abs=1e-6)  # (1/16 * 2 - 3/16 * 2) / (12/16) at every position
    assert cos[0][2] == pytest.approx((1 - 1 / 3) / 2, abs=1e-6)  # half the positions agree (1), half not
    assert cos[1][2] == pytest.approx((1 - 1 / 3) / 2, abs=1e-6)


def test_shared_lora_gradient_is_the_site_weight_gradient_projected_on_A() -> None:
    """dL/dB of y = W x + B A x at B = 0 is (dL/dW) A^T: recomputed from the plain weight gradient."""
    from hywu_bench.models import MLP

    scenario, parts = toy_scenario()
    torch.manual_seed(0)
    model = MLP((6,), 4, hidden=5)  # fc1 6->5, fc2 5->5, head 5->4: the site is fc2
    out = interference.probe(LinearStrategy(model), scenario, None, n_samples=40, rank=2)
    assert out["shared_lora"] == {"site": "fc2", "rank": 2, "seed": 0}
    A = interference.shared_adapter_A(5, 2, 0).float()  # (2, 5)
    projected = []
    for part in parts:
        model.zero_grad()
        nn.functional.cross_entropy(model(part.x), part.y).backward()
        projected.append((model.fc2.weight.grad @ A.T).flatten())  # (D_out r,)
    P = torch.stack(projected)
    expected = torch.nn.functional.cosine_similarity(P[:, None], P[None], dim=-1)
    assert np.allclose(out["gradient_conflict_shared_lora"], expected.numpy(), atol=1e-5)


def test_cosines_of_zero_vectors_are_zero_off_the_diagonal() -> None:
    cos = interference.cosine_matrix(torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.0]]))
    assert cos.tolist() == [[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]


@pytest.mark.parametrize("shared_A,shared_B,gated", [(False, False, False), (True, True, True),
                                                      (False, True, False), (True, False, True)])
def test_factor_gram_equals_the_gram_of_materialised_updates(shared_A: bool, shared_B: bool, gated: bool) -> None:
    g = torch.Generator().manual_seed(1)
    R, D_in, D_out, scaling = 3, 5, 4, 0.5
    experiences, dense = [], []
    for n in (2, 3):  # two experiences with 2 and 3 instances
        A = torch.randn(R, D_in, generator=g) if shared_A else torch.randn(n, R, D_in, generator=g)
        B = torch.randn(D_out, R, generator=g) if shared_B else torch.randn(n, D_out, R, generator=g)
        gate = torch.rand(n, R, generator=g) if gated else None
        experiences.append(interference._per_instance({"site": (A, B, gate, scaling)}, n, n))
        for i in range(n):
            Ai = A if shared_A else A[i]
            Bi = B if shared_B else B[i]
            s = gate[i] if gated else torch.ones(R)
            dense.append(scaling * (Bi @ torch.diag(s) @ Ai).flatten())
    U = torch.stack(dense).double()
    assert torch.allclose(interference._factor_gram(experiences), U @ U.T, atol=1e-10)
    means = torch.stack([U[:2].mean(0), U[2:].mean(0)])
    separation = interference.cosine_from_gram(interference._block_means(U @ U.T, [0, 0, 1, 1, 1], 2))
    assert separation[0, 1].item() == pytest.approx(torch.cosine_similarity(means[0], means[1], dim=0).item())


def test_kernel_pca_matches_pca_of_the_updates() -> None:
    U = torch.randn(30, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    U[:, 0] *= 5
    projected = interference._kernel_pca(U @ U.T, [0] * 30)
    centred = U - U.mean(0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    direct = centred @ vh[:2].T
    points = torch.tensor(projected["points"], dtype=torch.float64)
    for k in range(2):  # equal up to the sign of each component
        assert torch.allclose(points[:, k].abs(), direct[:, k].abs().float().double(), atol=1e-4)
    assert projected["explained_variance"][0] == pytest.approx((s[0] ** 2 / (s ** 2).sum()).item(), rel=1e-6)


class GeneratingStrategy(LinearStrategy):
    """A strategy that says what update each instance gets: its input's first two coordinates."""

    def generated_updates(self, x: torch.Tensor, task_labels: torch.Tensor | None = None) -> torch.Tensor:
        assert task_labels is not None and task_labels.shape == (x.shape[0],)
        return x[:, :2]  # (B, P=2)


def test_a_declared_generated_updates_method_gives_operator_separation() -> None:
    scenario, parts = toy_scenario(T=2, n=30)
    out = interference.probe(GeneratingStrategy(nn.Linear(6, 4)), scenario, None, n_samples=30)
    m = [p.x[:, :2].double().mean(0) for p in parts]
    assert out["operator_separation"][0][1] == pytest.approx(torch.cosine_similarity(m[0], m[1], dim=0).item(),
                                                             abs=1e-6)
    assert len(out["update_projection"]["points"]) == 60
    assert "gradient_conflict_own_factors" not in out  # needs low-rank sites to differentiate through


def test_hywu_probe_end_to_end_stored_and_drawn(tmp_path: Path) -> None:
    from hywu_bench.config import resolve_spec
    from hywu_bench.models import build_backbone
    from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins
    from hywu_bench.runner import seed_everything
    from hywu_bench.settings import resolve_hyperparameters
    from hywu_bench.training import TrainingSetup

    load_builtins()
    spec = resolve_spec(flags={"scenario": "split-digits", "strategy": "hywu", "epochs": 1, "device": "cpu"})
    seed_everything(0)
    scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)
    resolved = resolve_hyperparameters(spec, scenario.info)
    model = build_backbone(resolved.backbone, scenario.info.input_shape, scenario.info.n_classes, 0)
    setup = TrainingSetup(resolved, scenario.info, torch.device("cpu"), 1, resolved.batch_size, resolved.lr, [])
    strategy = STRATEGIES.build("hywu", model, setup)
    for experience in list(scenario.train_stream)[:3]:
        strategy.train(experience)
    params = list(strategy.model.parameters())
    before = [(p.detach().clone(), None if p.grad is None else p.grad.clone()) for p in params]

    out = interference.probe(strategy, scenario, setup, n_samples=32)
    for p, (value, grad) in zip(params, before):  # probing changes no parameter and no stored gradient
        assert torch.equal(p, value) and (p.grad is None if grad is None else torch.equal(p.grad, grad))
    assert set(interference.MATRIX_KINDS) <= set(out) and out["shared_lora"]["site"] == "fc2"
    assert len(out["update_projection"]["points"]) == 5 * 32

    # Pair (0, 3) of three probes, recomputed here with autograd on the same 32 test instances of each
    # experience: HY-WU's own forward, its optimiser's parameters, and the shared adapter's gradient as
    # (dL/dW_fc2) A^T on the frozen base weight.
    hywu = strategy.model.eval()
    trainable = list({id(p): p for g in strategy.optimizer.param_groups
                      for p in g["params"] if p.requires_grad}.values())
    weight = hywu.base.fc2.base_layer.weight  # frozen in HY-WU: made a leaf with a gradient only here
    A = interference.shared_adapter_A(weight.shape[1], interference.SHARED_RANK, 0).float()
    own, logit, shared = [], [], []
    for j in (0, 3):
        x, y, t = [v for v in scenario.test_stream[j].dataset._harness_tensors]
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:32]
        weight.requires_grad_(True)
        try:
            logits = hywu(x[keep], token=None, task=t[keep])  # (32, 10)
            loss = nn.functional.cross_entropy(logits, y[keep])
            *grads, g_weight = torch.autograd.grad(loss, [*trainable, weight], allow_unused=True)
        finally:
            weight.requires_grad_(False)
        own.append(torch.cat([(g if g is not None else torch.zeros_like(p)).flatten()
                              for g, p in zip(grads, trainable)]))
        logit.append((logits.softmax(1) - nn.functional.one_hot(y[keep], 10)).detach())  # (32, 10)
        shared.append((g_weight @ A.T).flatten())
    expected = {"gradient_conflict_own_parameters": torch.cosine_similarity(*own, dim=0).item(),
                "gradient_conflict_logits": torch.cosine_similarity(*logit, dim=1).mean().item(),  # per position
                "gradient_conflict_shared_lora": torch.cosine_similarity(*shared, dim=0).item()}
    for kind, value in expected.items():
        assert out[kind][0][3] == pytest.approx(value, abs=1e-4), kind

    path = tmp_path / "interference.json"
    interference.save(path, out)
    assert np.allclose(interference.load(path)["gradient_conflict_shared_lora"], out["gradient_conflict_shared_lora"])
    probes: list = []
    projections: list = []
    tables._probe_rows(path, {"scenario": "split-digits", "strategy": "hywu", "seed": 0}, probes, projections)
    loaded = tables.Loaded(tables.pd.DataFrame(), tables.pd.DataFrame(probes), tables.pd.DataFrame(projections))
    assert set(loaded.probes["kind"]) == set(interference.MATRIX_KINDS)
    for kind in interference.MATRIX_KINDS:
        figures.save(figures.cosine_heatmaps(loaded.probes, kind), tmp_path / kind, ("png",), dpi=40)
    figures.save(figures.update_projection(loaded.projections), tmp_path / "projection", ("png",), dpi=40)


def test_save_and_load_round_trip_with_nan_and_format_1_files(tmp_path: Path) -> None:
    path = tmp_path / "interference.json"
    interference.save(path, {"format_version": 2, "gradient_conflict_logits": [[1.0, math.nan], [math.nan, 1.0]]})
    assert interference.load(path)["gradient_conflict_logits"] == [[1.0, None], [None, 1.0]]
    interference.save(path, {"format_version": 1, "gradient_conflict": [[1.0, -0.5], [-0.5, 1.0]],
                             "gradient_conflict_updates": [[1.0, 0.1], [0.1, 1.0]]})
    old = interference.load(path)  # format 1 named the per-method probes without saying so
    assert old["gradient_conflict_own_parameters"] == [[1.0, -0.5], [-0.5, 1.0]] and "gradient_conflict" not in old
    assert old["gradient_conflict_own_factors"] == [[1.0, 0.1], [0.1, 1.0]]
    path.write_text('{"format_version": 99}')
    with pytest.raises(ValueError, match=r"known format version \(1, 2\)"):
        interference.load(path)
