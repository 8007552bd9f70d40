"""Interference probes on a trained strategy, run once after the final experience and stored with the run.

Gradient conflict is the cosine cos(g_i, g_j) between the loss gradients of experiences i and j, each
g on a fixed held-out sample of the test experience (the same `n_samples` positions of every experience
of the same size, so streams whose users label the same test images compare them image by image). A
cosine is only comparable between methods if every method's gradient lives in the same space; two
probes are, two are the method's own:

- `gradient_conflict_logits` (every method, one space): per instance, then averaged. For instance k of
  the sample, d_k^e = dl(z_k, y_k)/dz_k = softmax(z_k) - onehot(y_k) (C,) is the gradient of its loss
  with respect to its own logits, a space every method shares; the entry for experiences e, f is the mean
  over positions k < min(n_e, n_f) of cos(d_k^e, d_k^f) (an instance whose gradient is zero counts 0).
  It is the gradient of a shared quantity too, one offset per instance added to its logits, each instance
  weighted equally. On same-image streams (preference-, inverse-) position k is the same image under two
  users, so it says whether the two users want that image's outputs moved the same way: the instance-
  level conflict of the HY-WU paper, where a summed gradient (below) can hide it. On other streams
  position k pairs two unrelated images, and it says how aligned two experiences' output errors typically
  are (e.g. both pushing down the newest classes).
- `gradient_conflict_shared_lora` (every method, one space): g_e = dL_e/dB of one fixed adapter
  y = W x + B A x injected at the same site of every method's final model (the last Linear adapter site of
  the backbone, fc2 of the MLP and fc1 of the CNN, else the head), with A (r, D_in) a fixed seeded
  Gaussian and B (D_out, r) = 0, so the model's function is unchanged and dL/dB = (dL/dW) A^T: the
  gradient on the site's weight, on a fixed random r-dimensional projection of its inputs. This is the
  "single shared update" of the HY-WU paper (about -0.3 between conflicting tasks): the update every
  method would get if it had to serve both experiences with one more LoRA.
- `gradient_conflict_own_parameters` (in the method's own parameters): g on the parameters the
  strategy's optimiser updates. Spaces differ between methods (a LoRA's factors are not EWC's weights),
  so compare its values within a method, not across methods.
- `gradient_conflict_own_factors` (in the method's own generated factors, generating methods only): the
  gradient with respect to the generated factors (A, B and gates) of every instance, summed over the
  sample's instances. Not the gradient of any shared quantity (each instance has its own factors); it says
  whether the generator's outputs are pulled the same way. (With respect to dW summed over instances it
  would equal the gradient on the base weights.)
- `operator_separation` (generating methods): cos(m_i, m_j) between the mean generated update m = mean
  over instances of dW = scaling * B diag(s) A of each experience, from exact Gram matrices <dW_a, dW_b>_F
  (never materialising dW); low or negative: the experiences are put apart.
- update projection: the generated updates on their first two principal components (kernel PCA on
  the same Gram matrix), for the scatter coloured by experience.

Files of format 1 (keys `gradient_conflict`, `gradient_conflict_updates`) load with the keys renamed to
`gradient_conflict_own_parameters` and `gradient_conflict_own_factors`.

Generated updates are found without importing any strategy: every module with `lora_A`, `lora_B` and
`scaling` attributes (the low-rank operator wrappers of strategies/lowrank.py, used by HY-WU, the LoRA
family and hnet) is watched during the strategy's own forward pass, and the factors it holds are read
(per-instance (B, R, D) or shared (R, D)). A strategy may instead define
`generated_updates(x, condition=None, task_labels=None) -> Tensor (B, P)` (keyword arguments are passed
only when declared; a first parameter named `mbatch` gets Avalanche's minibatch list).

torch is imported inside the functions, so `save` / `load` (and `hywu-bench report`) stay torch-free.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from hywu_bench import results

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
FILE_NAME = "interference.json"
MATRIX_KINDS = ("gradient_conflict_logits", "gradient_conflict_shared_lora", "gradient_conflict_own_parameters",
                "gradient_conflict_own_factors", "operator_separation")
RENAMED = {1: {"gradient_conflict": "gradient_conflict_own_parameters",  # format 1 key -> this format's
               "gradient_conflict_updates": "gradient_conflict_own_factors"}}
TITLES = {  # for tables and figures
    "gradient_conflict_logits": "Gradient conflict on the logits, per instance (all methods, one space)",
    "gradient_conflict_shared_lora": "Gradient conflict on one shared LoRA adapter (all methods, one space)",
    "gradient_conflict_own_parameters": "Gradient conflict in the method's own parameters",
    "gradient_conflict_own_factors": "Gradient conflict in the method's own generated factors",
    "operator_separation": "Operator separation (cosine of mean generated updates)",
}
DESCRIPTIONS = {  # the report's paragraph per probe
    "gradient_conflict_logits":
        "Cosine between two experiences' per-instance loss gradients with respect to the logits (softmax - "
        "onehot), averaged over the held-out instances at the same sample positions (the same image under "
        "two users on preference and inverse streams): the same space for every method, so values compare "
        "across methods; instance-level conflict that a summed gradient can hide.",
    "gradient_conflict_shared_lora":
        "Cosine between two experiences' loss gradients with respect to B of one fixed zero-B rank-r LoRA "
        "adapter injected at the same site of every method's final model: the single shared update of the "
        "HY-WU paper (which reports about -0.3 between conflicting tasks), in one space for all methods.",
    "gradient_conflict_own_parameters":
        "Cosine between two experiences' loss gradients in the method's own parameters (those its optimiser "
        "updates), on held-out test samples after the final experience. Each method has its own space: "
        "compare within a method, not across methods.",
    "gradient_conflict_own_factors":
        "The same cosine in the method's own generated factors (summed over instances): whether the "
        "generator's outputs are pulled the same way. Not the gradient of a shared quantity.",
    "operator_separation":
        "Cosine similarity between the mean generated update of each pair of experiences: low values mean "
        "the generator puts the experiences in different regions.",
}
N_SAMPLES = 128  # test instances per experience: enough for a stable direction, cheap on a CPU
N_PROJECTED = 64  # instances per experience whose generated updates are compared (Gram: (64 T)^2)
SHARED_RANK = 16  # rank of the shared probe adapter (capped at the site's input width)


def probe(strategy: Any, scenario: Any, setup: Any, n_samples: int = N_SAMPLES, seed: int = 0,
          rank: int = SHARED_RANK) -> dict[str, Any]:
    """Run every probe the strategy allows on `scenario.test_stream`; plain lists, ready for `save`."""
    import torch

    device = torch.device(getattr(setup, "device", "cpu"))
    info = getattr(scenario, "info", None)
    model = strategy.model
    was_training, saved_mbatch = model.training, getattr(strategy, "mbatch", None)
    saved_phase = getattr(strategy, "is_training", None)
    batches = [[t.to(device) for t in batch] for batch in sample_batches(scenario.test_stream, n_samples, seed)]
    out: dict[str, Any] = {"format_version": FORMAT_VERSION, "n_samples": n_samples, "experiences": len(batches)}
    model.eval()
    if saved_phase is not None:
        strategy.is_training = False  # evaluation-time forward: no anchors, no training-only branches
    try:
        params = _trainable(strategy)
        site = shared_site(model)
        A = None if site is None else shared_adapter_A(site[1].in_features, rank, seed).to(site[1].weight)
        own, logit, shared, factors = [], [], [], []
        for batch in batches:
            with _SiteWatch(model) as watch, _SharedAdapter(site, A) as adapter:
                logits = _logits(strategy, batch, info)  # (n, C)
                loss = _cross_entropy(logits, batch[1])
                found = torch.autograd.grad(loss, [*params, logits, *adapter.leaves], allow_unused=True)
            own.append(_flat(found[:len(params)], params))
            logit.append(found[len(params)].detach().double().cpu())  # (n, C): (softmax - onehot) / n
            if adapter.leaves and found[-1] is not None:
                shared.append(found[-1].detach().double().reshape(-1).cpu())  # (D_out r,)
            factors.append(watch.factors)
        out["parameters"] = int(sum(p.numel() for p in params))
        out["gradient_norms"] = [float(g.norm()) for g in own]  # in the method's own parameters
        out["gradient_conflict_own_parameters"] = cosine_matrix(torch.stack(own)).tolist()
        out["gradient_conflict_logits"] = paired_cosines(logit).tolist()
        if site is not None and len(shared) == len(batches):
            out["gradient_conflict_shared_lora"] = cosine_matrix(torch.stack(shared)).tolist()
            out["shared_lora"] = {"site": site[0], "rank": int(A.shape[0]), "seed": seed}
        _updates(strategy, batches, factors, info, out)
    finally:
        model.train(was_training)
        if hasattr(strategy, "mbatch"):
            strategy.mbatch = saved_mbatch
        if saved_phase is not None:
            strategy.is_training = saved_phase
    return out


def sample_batches(stream: Any, n_samples: int, seed: int) -> list[list["torch.Tensor"]]:
    """[x, y, (c,) t] of `n_samples` instances of every experience, at positions drawn from `seed` and the
    experience's size only: experiences of one size share positions (the same image on same-image streams)."""
    import torch

    from hywu_bench.data import dataset_tensors

    batches = []
    for exp in stream:
        tensors = dataset_tensors(exp.dataset)
        if tensors is None:
            raise ValueError("interference probes need a tensor-backed test stream (hywu_bench.data.make_scenario)")
        keep = torch.randperm(len(tensors[1]), generator=torch.Generator().manual_seed(seed))[:n_samples]
        batches.append([t[keep] for t in tensors])
    return batches


def shared_site(model: Any) -> tuple[str, Any] | None:
    """(name, Linear) where the shared probe adapter goes: the backbone's last Linear adapter site, else its
    head. The backbone is the first module with `adapter_sites` and a `head`; a low-rank wrapper at the site
    is looked through to its `base_layer`. None if the model has no such backbone."""
    from torch import nn

    backbone = next((m for m in model.modules() if hasattr(m, "adapter_sites") and hasattr(m, "head")), None)
    if backbone is None:
        return None
    layers = {name: getattr(backbone.get_submodule(name), "base_layer", backbone.get_submodule(name))
              for name in (*backbone.adapter_sites, "head")}
    linear = [name for name in backbone.adapter_sites if isinstance(layers[name], nn.Linear)]
    name = linear[-1] if linear else "head"
    return (name, layers[name]) if isinstance(layers[name], nn.Linear) else None


def shared_adapter_A(d_in: int, rank: int, seed: int) -> "torch.Tensor":
    """The shared probe adapter's fixed A (r, D_in), r = min(rank, D_in): seeded Gaussian / sqrt(D_in)."""
    import torch

    r = min(rank, d_in)
    return torch.randn(r, d_in, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) / d_in**0.5


class _SharedAdapter:
    """y = W x + B (A x) at one Linear, with B = 0 a gradient leaf (the function is unchanged), for one pass."""

    def __init__(self, site: tuple[str, Any] | None, A: "torch.Tensor | None"):
        self.site, self.A, self.leaves, self.handle = site, A, [], None

    def __enter__(self) -> "_SharedAdapter":
        if self.site is not None:
            import torch
            from torch.nn import functional as F

            A = self.A  # (r, D_in)
            B = torch.zeros(self.site[1].out_features, A.shape[0], dtype=A.dtype, device=A.device,
                            requires_grad=True)  # (D_out, r)
            self.leaves = [B]
            self.handle = self.site[1].register_forward_hook(
                lambda module, inputs, output: output + F.linear(F.linear(inputs[0], A), B))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            self.handle.remove()


def _trainable(strategy: Any) -> list["torch.nn.Parameter"]:
    """The parameters the strategy's optimiser updates (its shared, trainable state), in a fixed order."""
    seen, params = set(), []
    groups = getattr(getattr(strategy, "optimizer", None), "param_groups", None)
    candidates = [p for g in groups for p in g["params"]] if groups else list(strategy.model.parameters())
    for p in candidates:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    if not params:
        raise ValueError("the strategy has no trainable parameters to probe")
    return params


def _logits(strategy: Any, batch: list["torch.Tensor"], info: Any) -> "torch.Tensor":
    """The strategy's own forward (so HY-WU generates its updates), with the task mask where the setting has one."""
    strategy.mbatch = batch
    try:
        logits = strategy.forward()
    except Exception as err:  # a template that needs its training-loop state: fall back to the bare model
        log.debug("strategy.forward() failed (%s); probing strategy.model(x)", err)
        logits = strategy.model(batch[0])
    if info is not None and getattr(info, "task_aware", False):
        import torch

        allowed = torch.zeros(info.n_experiences, info.n_classes, dtype=torch.bool, device=logits.device)
        for e in info.experiences:
            allowed[e.index, list(e.classes)] = True
        logits = logits.masked_fill(~allowed[batch[-1]], -1e4)
    return logits


def _cross_entropy(logits: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
    from torch.nn import functional as F

    return F.cross_entropy(logits, y)


def _loss(strategy: Any, batch: list["torch.Tensor"], info: Any) -> "torch.Tensor":
    return _cross_entropy(_logits(strategy, batch, info), batch[1])


def _flat(grads: Any, params: list["torch.Tensor"]) -> "torch.Tensor":
    import torch

    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).detach().float().cpu()
                      for g, p in zip(grads, params)])


def cosine_matrix(vectors: "torch.Tensor") -> "torch.Tensor":
    """(T, P) -> (T, T) cosine similarities; a zero vector has cosine 0 with everything else."""
    return cosine_from_gram(vectors.double() @ vectors.double().T).float()


def paired_cosines(rows: list["torch.Tensor"]) -> "torch.Tensor":
    """[(n_e, C)] per experience -> (T, T): mean over positions k < min(n_e, n_f) of cos(rows_e[k], rows_f[k])."""
    import torch

    unit = [r.double() / r.double().norm(dim=1, keepdim=True).clamp_min(1e-30) for r in rows]  # zero rows stay 0
    T = len(unit)
    out = torch.eye(T, dtype=torch.float64)
    for e in range(T):
        for f in range(e + 1, T):
            m = min(len(unit[e]), len(unit[f]))
            out[e, f] = out[f, e] = (unit[e][:m] * unit[f][:m]).sum(1).mean() if m else 0.0
    return out.float()


def cosine_from_gram(gram: "torch.Tensor") -> "torch.Tensor":
    import torch

    norms = gram.diagonal().clamp_min(0).sqrt()  # (T,)
    cos = (gram / (norms[:, None] * norms[None, :]).clamp_min(1e-30)).clamp(-1, 1)
    cos = torch.where((norms[:, None] * norms[None, :]) > 0, cos, torch.zeros_like(cos))
    return cos.fill_diagonal_(1.0)


class _SiteWatch:
    """Reads (and optionally replaces by gradient leaves) the factors every low-rank site holds when it runs."""

    def __init__(self, model: Any, leaves: bool = False):
        self.sites = {name: m for name, m in model.named_modules()
                      if all(hasattr(m, a) for a in ("lora_A", "lora_B", "scaling"))}
        self.leaves = leaves
        self.factors: dict[str, tuple[Any, ...]] = {}  # name -> (A, B, gate or None, scaling)
        self.handles: list[Any] = []

    def __enter__(self) -> "_SiteWatch":
        for name, module in self.sites.items():
            self.handles.append(module.register_forward_pre_hook(self._hook(name)))
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()

    def _hook(self, name: str) -> Callable[..., None]:
        def read(module: Any, inputs: Any) -> None:
            A, B = module.lora_A, module.lora_B
            if A is None or B is None or name in self.factors:
                return
            gate = getattr(module, "lora_scale", None)
            if self.leaves:  # the site runs on leaves, so autograd gives d loss / d factors
                A, B, gate = _leaf(A), _leaf(B), _leaf(gate)
                module.lora_A, module.lora_B, module.lora_scale = A, B, gate
            self.factors[name] = (A, B, gate, float(module.scaling))

        return read


def _leaf(t: Any) -> Any:
    """A detached copy that requires grad; a Parameter stays a Parameter (modules register those)."""
    import torch

    if t is None:
        return None
    if isinstance(t, torch.nn.Parameter):
        return torch.nn.Parameter(t.detach(), requires_grad=True)
    return t.detach().requires_grad_(True)


def _updates(strategy: Any, batches: list[list["torch.Tensor"]], factors: list[dict[str, tuple[Any, ...]]],
             info: Any, out: dict[str, Any]) -> None:
    """Operator separation, update projection and gradient conflict on the generated factors."""
    import torch

    method = getattr(strategy, "generated_updates", None)
    n = [min(len(b[0]), N_PROJECTED) for b in batches]
    if method is not None:
        with torch.no_grad():
            U = torch.cat([_call(method, b).detach().double().reshape(len(b[0]), -1)[:k].cpu()
                           for b, k in zip(batches, n)])  # (N, P)
        gram = U @ U.T
    elif factors and all(factors):
        gram = _factor_gram([_per_instance(f, len(b[0]), k) for f, b, k in zip(factors, batches, n)])
    else:
        return  # no generated updates: only the gradient-conflict probes apply
    labels = [e for e, k in enumerate(n) for _ in range(k)]
    out["operator_separation"] = cosine_from_gram(_block_means(gram, labels, len(batches))).tolist()
    out["update_projection"] = _kernel_pca(gram, labels)
    if method is None:
        grads = []
        for batch in batches:
            with _SiteWatch(strategy.model, leaves=True) as watch:
                loss = _loss(strategy, batch, info)
            leaves = [t for (A, B, gate, _) in watch.factors.values() for t in (A, B, gate) if t is not None]
            per_instance = [t.dim() == 3 or t is gate for (A, B, gate, _) in watch.factors.values()
                            for t in (A, B, gate) if t is not None]
            found = torch.autograd.grad(loss, leaves, allow_unused=True)
            summed = [(g.sum(0) if each else g) if g is not None else torch.zeros_like(t[0] if each else t)
                      for g, t, each in zip(found, leaves, per_instance)]  # summed over the sample's instances
            grads.append(torch.cat([g.reshape(-1).float().cpu() for g in summed]))
        if len({g.numel() for g in grads}) == 1:
            out["gradient_conflict_own_factors"] = cosine_matrix(torch.stack(grads)).tolist()


def _per_instance(f: dict[str, tuple[Any, ...]], batch: int, keep: int) -> dict[str, tuple[Any, ...]]:
    """The first `keep` instances' factors, as A (n|1, R, D_in), B (n|1, D_out, R), gate (n, R), scaling.

    A factor shared by the batch keeps a leading 1, so a bank of shared bases mixed by per-instance
    gates costs (R, R) per pair of experiences, not (n, n, R, R)."""
    out = {}
    for name, (A, B, gate, scaling) in f.items():
        A = (A.unsqueeze(0) if A.dim() == 2 else A[:keep]).detach().double().cpu()
        B = (B.unsqueeze(0) if B.dim() == 2 else B[:keep]).detach().double().cpu()
        gate = gate[:keep].detach().double().cpu() if gate is not None else None
        n = gate.shape[0] if gate is not None else max(A.shape[0], B.shape[0], 1)
        n = keep if A.shape[0] == B.shape[0] == 1 and gate is None else n
        out[name] = (A, B, gate if gate is not None else _ones(n, A.shape[1]), scaling)
    return out


def _ones(n: int, r: int) -> "torch.Tensor":
    import torch

    return torch.ones(n, r, dtype=torch.float64)


def _block(fa: tuple[Any, ...], fb: tuple[Any, ...]) -> "torch.Tensor":
    """<dW_i, dW_j>_F for instances i of one experience and j of another at one site: (n_a, n_b).

    dW = s * B diag(g) A, so <dW_i, dW_j> = s^2 sum_uv g_iu g_jv (A_i A_j^T)_uv (B_i^T B_j)_uv.
    """
    import torch

    (Aa, Ba, ga, s), (Ab, Bb, gb, _) = fa, fb
    P = torch.einsum("iud,jvd->ijuv", Aa, Ab) * torch.einsum("ieu,jev->ijuv", Ba, Bb)  # (n_a|1, n_b|1, R, R)
    if P.shape[0] == 1 and P.shape[1] == 1:
        return s**2 * ga @ P[0, 0] @ gb.T
    if P.shape[1] == 1:
        return s**2 * torch.einsum("iu,iuv,jv->ij", ga, P[:, 0], gb)
    if P.shape[0] == 1:
        return s**2 * torch.einsum("iu,juv,jv->ij", ga, P[0], gb)
    return s**2 * torch.einsum("iu,ijuv,jv->ij", ga, P, gb)


def _factor_gram(per_experience: list[dict[str, tuple[Any, ...]]]) -> "torch.Tensor":
    """<dW_i, dW_j>_F over all instances of all experiences, summed over sites: (N, N)."""
    import torch

    T = len(per_experience)
    rows = []
    for a in range(T):
        blocks = [sum(_block(per_experience[a][name], per_experience[b][name]) for name in per_experience[a])
                  for b in range(T)]
        rows.append(torch.cat(blocks, dim=1))
    return torch.cat(rows, dim=0)


def _block_means(gram: "torch.Tensor", labels: list[int], T: int) -> "torch.Tensor":
    """<m_a, m_b> for the experiences' mean updates, from the instance Gram matrix: (T, T)."""
    import torch

    onehot = torch.zeros(len(labels), T, dtype=gram.dtype)
    onehot[torch.arange(len(labels)), torch.tensor(labels)] = 1.0
    weights = onehot / onehot.sum(0).clamp_min(1)  # (N, T)
    return weights.T @ gram @ weights


def _kernel_pca(gram: "torch.Tensor", labels: list[int]) -> dict[str, Any]:
    """The first two principal components of the updates, from their Gram matrix (linear kernel PCA)."""
    import torch

    n = gram.shape[0]
    H = torch.eye(n, dtype=gram.dtype) - 1.0 / n
    centred = H @ gram @ H  # (N, N)
    values, vectors = torch.linalg.eigh(centred)  # ascending
    values, vectors = values.flip(0).clamp_min(0), vectors.flip(1)
    points = vectors[:, :2] * values[:2].sqrt()  # (N, 2)
    if points.shape[1] < 2:
        points = torch.cat([points, torch.zeros(n, 2 - points.shape[1], dtype=points.dtype)], 1)
    ratio = (values[:2] / values.sum().clamp_min(1e-30)).tolist()
    return {"points": points.float().tolist(), "experience": labels, "explained_variance": ratio}


def _call(method: Callable[..., Any], batch: list["torch.Tensor"], *args: Any) -> Any:
    """Call a duck-typed strategy method with the keyword arguments it declares."""
    declared = inspect.signature(method).parameters
    if next(iter(declared), None) == "mbatch":
        return method(batch, *args)
    kwargs: dict[str, Any] = {}
    if "condition" in declared:
        kwargs["condition"] = batch[2] if len(batch) == 4 else None
    for name in ("task_labels", "task"):
        if name in declared:
            kwargs[name] = batch[-1]
    return method(batch[0], *args, **kwargs)


def save(path: str | Path, probe_result: dict[str, Any]) -> None:
    """Write a probe result as JSON, atomically (plain lists and numbers only)."""
    results.atomic_write_json(Path(path), probe_result)


def load(path: str | Path) -> dict[str, Any]:
    """Read a stored probe result; matrices come back as nested lists (None where a value was NaN). A file
    of an earlier format comes back with this format's keys."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    version = data.get("format_version") if isinstance(data, dict) else None
    if version != FORMAT_VERSION and version not in RENAMED:
        known = ", ".join(map(str, sorted({*RENAMED, FORMAT_VERSION})))
        raise ValueError(f"{path} is not an interference file of a known format version ({known})")
    for old, new in RENAMED.get(version, {}).items():
        if old in data:
            data[new] = data.pop(old)
    for kind in MATRIX_KINDS:
        matrix = data.get(kind)
        if matrix is not None and np.asarray(matrix, dtype=float).ndim != 2:
            raise ValueError(f"{path}: '{kind}' is not a matrix")
    return data
