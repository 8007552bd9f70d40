"""Generators: a condition vector per instance -> low-rank factors for every adapter site.

A generator maps conditions c (B, C) to `{site: factors}` in the form `operator.use_factors` takes:
(lora_A (B, R, D_in), lora_B (B, D_out, R)) per instance, or, for the bank, shared bases and a
per-instance gate (lora_A (R, D_in), lora_B (D_out, R), lora_scale (B, R)). Three architectures:

- `mlp`: a trunk and one linear head per site and factor; fast to write, expensive in parameters
  (every instance gets R * (D_in + D_out) fresh numbers per site).
- `tokens`: the HY-WU paper's design at small scale (Tencent-Hunyuan/HY-WU, `wu/`). Each factor is cut
  into rank-anchored tiles: token (site, r, j) is tile j of row r of A or of column r of B. Tokens get
  learned embeddings per (site, tile) and per rank index, then transformer blocks with factorised
  attention: within a site, across sites (among tokens of the same rank index), and cross-attention to
  the condition (cut into a few tokens); linear heads read A and B tiles out.
- `bank`: K learned low-rank bases per site (B_k A_k, rank r each); the generator emits K mixing
  coefficients per site (softmax scaled by K), so an instance costs K numbers instead of r (D_in + D_out).

Every design starts at an exactly zero update (B or the bank's B is zero-initialised, as LoRA does),
so before training the adapted model is the base model. `delta_distance` and `delta_gram` compare the
generated updates themselves, ||scaling (B A - B' A')||_F^2, exactly through R x R Gram matrices,
without forming any D_out x D_in matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Mapping

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from strategies.hywu.options import ARCHITECTURES
from strategies.lowrank import Factors


@dataclass(frozen=True)
class GeneratorConfig:
    arch: Literal["mlp", "tokens", "bank"] = "bank"
    rank: int = 4  # rank of each generated update (of each bank basis for `bank`)
    hidden: int = 256  # trunk width of `mlp`, coefficient-net width of `bank`
    bank_size: int = 24  # K bases per site (`bank`)
    tile: int = 64  # tile length (`tokens`)
    width: int = 64  # token width (`tokens`)
    depth: int = 2  # transformer blocks (`tokens`)
    heads: int = 4  # attention heads (`tokens`)
    condition_tokens: int = 4  # the condition is cut into this many tokens for cross-attention (`tokens`)
    train_bank_A: bool = True  # False: the bank's A stays at its random init (as LoRA-FA); cheaper

    def __post_init__(self) -> None:
        if self.arch not in ARCHITECTURES:
            raise ValueError(f"generator '{self.arch}' is not one of {', '.join(ARCHITECTURES)}")
        for name in ("rank", "hidden", "bank_size", "tile", "width", "depth", "heads", "condition_tokens"):
            if getattr(self, name) < (0 if name == "hidden" and self.arch == "bank" else 1):
                raise ValueError(f"generator {name} must be >= 1 (got {getattr(self, name)}); "
                                 "only the bank takes hidden=0 (a linear router)")
        if self.width % self.heads:
            raise ValueError(f"generator width {self.width} must be divisible by heads {self.heads}")


class Generator(nn.Module):
    """condition (B, C) -> {site: factors}. `factor_rank` is the R the operator sees per site."""

    shapes: dict[str, tuple[int, int]]
    factor_rank: int

    def forward(self, c: Tensor) -> dict[str, Factors]:
        raise NotImplementedError

    def pack(self, factors: Mapping[str, Factors]) -> dict[str, Factors]:
        """A detached, compact copy of generated factors, to store (the regulariser's snapshot)."""
        return detach_factors(factors)

    def unpack(self, packed: Mapping[str, Factors], index: Tensor) -> dict[str, Factors]:
        """The stored factors of instances `index`, in the form `forward` returns."""
        return slice_factors(packed, index)

    def distance(self, now: Mapping[str, Factors], packed: Mapping[str, Factors], index: Tensor,
                 scaling: Mapping[str, float]) -> Tensor:
        """sum over sites of ||dW_now - dW_stored||_F^2 for instances `index` of `packed`, (n,)."""
        then = self.unpack(packed, index)
        return sum(delta_distance(now[s], then[s], scaling[s]) for s in self.shapes)  # type: ignore[return-value]


def _lora_init_A(rank: int, d_in: int) -> Tensor:
    """LoRA's (and peft's) kaiming-uniform initialisation of A, (rank, d_in)."""
    A = torch.empty(rank, d_in)
    nn.init.kaiming_uniform_(A, a=math.sqrt(5))
    return A


class MLPGenerator(Generator):
    """A trunk and per-site linear heads: A = A_0 + head_A(h), B = head_B(h) (zero at init)."""

    def __init__(self, cond_dim: int, shapes: Mapping[str, tuple[int, int]], cfg: GeneratorConfig):
        super().__init__()
        self.shapes, self.factor_rank, r = dict(shapes), cfg.rank, cfg.rank
        self.trunk = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, cfg.hidden), nn.GELU(),
                                   nn.Linear(cfg.hidden, cfg.hidden), nn.GELU())
        self.A0 = nn.ParameterDict({_key(s): nn.Parameter(_lora_init_A(r, d_in)) for s, (d_in, _) in shapes.items()})
        self.head_A = nn.ModuleDict({_key(s): nn.Linear(cfg.hidden, r * d_in) for s, (d_in, _) in shapes.items()})
        self.head_B = nn.ModuleDict({_key(s): nn.Linear(cfg.hidden, d_out * r) for s, (_, d_out) in shapes.items()})
        for s, (d_in, _) in shapes.items():
            nn.init.normal_(self.head_A[_key(s)].weight, std=0.1 / math.sqrt(cfg.hidden * d_in))
            nn.init.zeros_(self.head_A[_key(s)].bias)
            nn.init.zeros_(self.head_B[_key(s)].weight)
            nn.init.zeros_(self.head_B[_key(s)].bias)

    def forward(self, c: Tensor) -> dict[str, Factors]:
        h = self.trunk(c)  # (B, H)
        n, r, out = c.shape[0], self.factor_rank, {}
        for s, (d_in, d_out) in self.shapes.items():
            A = self.A0[_key(s)] + self.head_A[_key(s)](h).view(n, r, d_in)  # (B, R, D_in)
            B = self.head_B[_key(s)](h).view(n, d_out, r)  # (B, D_out, R)
            out[s] = (A, B)
        return out


class BankGenerator(Generator):
    """K learned rank-r bases per site, mixed per instance: dW_i = sum_k a_ik B_k A_k."""

    def __init__(self, cond_dim: int, shapes: Mapping[str, tuple[int, int]], cfg: GeneratorConfig):
        super().__init__()
        self.shapes, self.rank, self.bank_size = dict(shapes), cfg.rank, cfg.bank_size
        self.factor_rank = cfg.rank * cfg.bank_size
        kr = self.factor_rank
        self.lora_A = nn.ParameterDict({_key(s): nn.Parameter(_lora_init_A(kr, d_in), requires_grad=cfg.train_bank_A)
                                        for s, (d_in, _) in shapes.items()})  # (K r, D_in) per site
        self.lora_B = nn.ParameterDict({_key(s): nn.Parameter(torch.zeros(d_out, kr))
                                        for s, (_, d_out) in shapes.items()})  # (D_out, K r), zero: dW = 0
        n_out = len(shapes) * cfg.bank_size
        if cfg.hidden:  # a one-hidden-layer coefficient net
            net = [nn.Linear(cond_dim, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, n_out)]
        else:  # a linear router over the normalised condition, as mixture-of-experts layers gate experts
            net = [nn.Linear(cond_dim, n_out)]
        self.coefficients = nn.Sequential(nn.LayerNorm(cond_dim), *net)
        self._grams: dict[tuple, tuple] = {}  # Gram matrices of tensors that do not change
        self._keys = [(s, _key(s)) for s in self.shapes]
        self._joint_weight: tuple | None = None  # (weight, its version and storage, weight / sqrt(1 + eps))

    def mixing(self, c: Tensor) -> Tensor:
        """(B, n_sites, K) coefficients, softmax over the bank scaled by K (mean 1)."""
        logits = self.coefficients(c).view(c.shape[0], len(self.shapes), self.bank_size)
        return self.bank_size * logits.softmax(-1)

    def mixing_of_normalised(self, v: Tensor, eps: float) -> Tensor:
        """`mixing(F.layer_norm(v, eps=eps))` with the two layer norms in a row (that one, then the
        coefficient net's own, eps e2, weight w, bias b) done as one: the first leaves mean 0 and variance
        var / (var + eps), so the pair is (v - mean) / sqrt((1 + e2) var + eps e2) * w + b, a single layer
        norm with eps * e2 / (1 + e2) and weight w / sqrt(1 + e2). The same function; one pass less."""
        norm, *net = self.coefficients
        e2 = norm.eps
        logits = F.layer_norm(v, norm.normalized_shape, self._joint_norm_weight(), norm.bias, eps * e2 / (1 + e2))
        for layer in net:
            logits = layer(logits)
        logits = logits.view(v.shape[0], len(self.shapes), self.bank_size)
        if torch.is_grad_enabled():
            return self.bank_size * logits.softmax(-1)
        return logits.softmax(-1).mul_(self.bank_size)

    def _joint_norm_weight(self) -> Tensor:
        """w / sqrt(1 + e2) of `mixing_of_normalised`, kept while w is unchanged (no gradient needed)."""
        norm = self.coefficients[0]
        w = norm.weight
        if torch.is_grad_enabled() and w.requires_grad:
            return w / math.sqrt(1 + norm.eps)
        hit = self._joint_weight
        key = (w._version, w.data_ptr(), w.dtype, w.device)  # an optimizer step, a load, a move change it
        if hit is not None and hit[0] is w and hit[1] == key:
            return hit[2]
        scaled = w.detach() / math.sqrt(1 + norm.eps)
        self._joint_weight = (w, key, scaled)
        return scaled

    def forward(self, c: Tensor) -> dict[str, Factors]:
        mix = self.mixing(c).repeat_interleave(self.rank, dim=-1)  # (B, n_sites, K r)
        return {s: (self.lora_A[_key(s)], self.lora_B[_key(s)], mix[:, i]) for i, s in enumerate(self.shapes)}

    def imbalance(self, factors: Mapping[str, Factors]) -> Tensor:
        """Mean over sites of KL(mean mixing over the instances || uniform): 0 when the bases are used
        equally across the instances (each may still pick a few), log K when one basis takes every instance,
        the router collapse that Switch Transformer's load-balancing loss guards against (Fedus et al. 2022)."""
        total = 0.0
        for _, _, gate in factors.values():  # K coefficients times K per instance, each repeated r times or not
            gate = gate if gate.shape[-1] == self.bank_size else gate[:, :: self.rank]
            mean = gate.float().mean(0) / self.bank_size  # (K,), sums to 1
            total = total + (mean * (mean.clamp_min(1e-12) * self.bank_size).log()).sum()
        return total / len(factors)

    def grouped(self, mix: Tensor) -> dict[str, Factors]:
        """The factors of mixing coefficients `mix` (B, n_sites, K) with each gate per basis, (B, K): the
        operator scales each basis' r components by its entry (the same update as `forward`'s gates,
        repeated r times, without forming them). For inference; `expand` gives `forward`'s form."""
        A, B = self.lora_A._parameters, self.lora_B._parameters  # (ParameterDict's lookup costs per call)
        return {s: (A[k], B[k], mix[:, i]) for i, (s, k) in enumerate(self._keys)}

    def expand(self, factors: Mapping[str, Factors]) -> dict[str, Factors]:
        """Grouped factors in `forward`'s form (each gate entry repeated `rank` times)."""
        return {s: (A, B, gate.repeat_interleave(self.rank, dim=-1) if gate.shape[-1] == self.bank_size else gate)
                for s, (A, B, gate) in factors.items()}

    def pack(self, factors: Mapping[str, Factors]) -> dict[str, Factors]:
        """The bases once and K coefficients per instance (the gate repeats each one `rank` times)."""
        return {s: (A.detach().clone(), B.detach().clone(), gate.detach()[:, ::self.rank].clone())
                for s, (A, B, gate) in factors.items()}

    def unpack(self, packed: Mapping[str, Factors], index: Tensor) -> dict[str, Factors]:
        return {s: (A, B, coef[index].repeat_interleave(self.rank, dim=-1)) for s, (A, B, coef) in packed.items()}

    def distance(self, now: Mapping[str, Factors], packed: Mapping[str, Factors], index: Tensor,
                 scaling: Mapping[str, float]) -> Tensor:
        """Exact, with K x K matrices: dW_i = B diag(c_i (x) 1_r) A, so ||dW_i - dW0_i||^2 =
        c M11 c - 2 c M10 c0 + c0 M00 c0, M_xy = pool_r((A_x A_y^T) * (B_x^T B_y))."""
        total: Tensor | float = 0.0
        for s in self.shapes:
            A, B, gate = now[s]
            A0, B0, coef0 = packed[s]
            c, c0 = gate[:, ::self.rank], coef0[index]  # (n, K)
            m11 = self._pool(self._gram(A, A) * self._gram(B, B, cols=True))
            m10 = self._pool(self._gram(A, A0) * self._gram(B, B0, cols=True))
            m00 = self._pool(self._gram(A0, A0) * self._gram(B0, B0, cols=True))
            d = (torch.einsum("nk,kl,nl->n", c, m11, c) - 2 * torch.einsum("nk,kl,nl->n", c, m10, c0)
                 + torch.einsum("nk,kl,nl->n", c0, m00, c0))
            total = total + scaling[s] ** 2 * d.clamp_min(0)
        return total  # type: ignore[return-value]

    def _pool(self, m: Tensor) -> Tensor:
        """(K r, K r) -> (K, K): sum over the r x r block of each pair of bases."""
        k, r = self.bank_size, self.rank
        return m.view(k, r, k, r).sum((1, 3))

    def _gram(self, x: Tensor, y: Tensor, cols: bool = False) -> Tensor:
        """x @ y.T (x.T @ y with `cols`), cached while neither needs a gradient (snapshots, a frozen A) nor
        changes in place. The cache holds the tensors themselves, so their ids cannot be reused while cached."""
        if x.requires_grad or y.requires_grad:
            return x.T @ y if cols else x @ y.T
        key = (id(x), id(y), cols)
        hit = self._grams.get(key)
        if hit is not None and hit[0] is x and hit[1] is y and hit[2] == (x._version, y._version):
            return hit[3]
        if len(self._grams) >= 16:
            self._grams.clear()
        result = x.T @ y if cols else x @ y.T
        self._grams[key] = (x, y, (x._version, y._version), result)
        return result


class _Block(nn.Module):
    """Pre-norm transformer block: cross-attention to the condition, within-site and across-site
    self-attention (by attention masks over one token sequence), then an MLP."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(4))
        self.cross = nn.MultiheadAttention(width, heads, batch_first=True)
        self.within = nn.MultiheadAttention(width, heads, batch_first=True)
        self.across = nn.MultiheadAttention(width, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))

    def forward(self, z: Tensor, cond: Tensor, within_mask: Tensor, across_mask: Tensor) -> Tensor:
        q = self.norms[0](z)  # (B, T, W)
        z = z + self.cross(q, cond, cond, need_weights=False)[0]
        q = self.norms[1](z)
        z = z + self.within(q, q, q, attn_mask=within_mask, need_weights=False)[0]
        q = self.norms[2](z)
        z = z + self.across(q, q, q, attn_mask=across_mask, need_weights=False)[0]
        return z + self.mlp(self.norms[3](z))


class TokenGenerator(Generator):
    """HY-WU's tokenised generator at small scale: rank-anchored tiles of A and B as tokens."""

    def __init__(self, cond_dim: int, shapes: Mapping[str, tuple[int, int]], cfg: GeneratorConfig):
        super().__init__()
        self.shapes, self.factor_rank, self.tile = dict(shapes), cfg.rank, cfg.tile
        r, t, w = cfg.rank, cfg.tile, cfg.width
        # Token layout: for each site, for each rank index r, the A tiles then the B tiles of that rank.
        site_ids, rank_ids, tile_ids = [], [], []
        self.layout: dict[str, tuple[int, int, int]] = {}  # site -> (first token, A tiles, B tiles)
        n_tile_pos = 0
        for i, (s, (d_in, d_out)) in enumerate(shapes.items()):
            ta, tb = -(-d_in // t), -(-d_out // t)
            self.layout[s] = (len(site_ids), ta, tb)
            for rank in range(r):
                for j in range(ta + tb):
                    site_ids.append(i), rank_ids.append(rank), tile_ids.append(n_tile_pos + j)
            n_tile_pos += ta + tb
        self.tile_embedding = nn.Parameter(0.02 * torch.randn(n_tile_pos, w))  # per (site, tile)
        self.rank_embedding = nn.Parameter(0.02 * torch.randn(r, w))  # rank-anchored
        self.register_buffer("_tile_ids", torch.tensor(tile_ids), persistent=False)
        self.register_buffer("_rank_ids", torch.tensor(rank_ids), persistent=False)
        sites, ranks = torch.tensor(site_ids), torch.tensor(rank_ids)
        # True = not allowed to attend (nn.MultiheadAttention's boolean mask convention).
        self.register_buffer("_within", sites[:, None] != sites[None, :], persistent=False)
        self.register_buffer("_across", ranks[:, None] != ranks[None, :], persistent=False)
        self.cond_tokens = cfg.condition_tokens
        self.condition = nn.Sequential(nn.LayerNorm(cond_dim), nn.Linear(cond_dim, cfg.condition_tokens * w))
        self.blocks = nn.ModuleList(_Block(w, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(w)
        self.head_A = nn.Linear(w, t)
        self.head_B = nn.Linear(w, t)
        nn.init.zeros_(self.head_B.weight)
        nn.init.zeros_(self.head_B.bias)
        self.A0 = nn.ParameterDict({_key(s): nn.Parameter(_lora_init_A(r, d_in)) for s, (d_in, _) in shapes.items()})

    def forward(self, c: Tensor) -> dict[str, Factors]:
        n, r, t = c.shape[0], self.factor_rank, self.tile
        cond = self.condition(c).view(n, self.cond_tokens, -1)  # (B, Tc, W)
        z = (self.tile_embedding[self._tile_ids] + self.rank_embedding[self._rank_ids]).expand(n, -1, -1)  # (B, T, W)
        for block in self.blocks:
            z = block(z, cond, self._within, self._across)
        z = self.norm(z)
        out = {}
        for s, (d_in, d_out) in self.shapes.items():
            start, ta, tb = self.layout[s]
            zs = z[:, start:start + r * (ta + tb)].reshape(n, r, ta + tb, -1)  # (B, R, ta + tb, W)
            A = self.head_A(zs[:, :, :ta]).reshape(n, r, ta * t)[..., :d_in]  # (B, R, D_in)
            B = self.head_B(zs[:, :, ta:]).reshape(n, r, tb * t)[..., :d_out]  # (B, R, D_out)
            out[s] = (self.A0[_key(s)] + 0.1 * A, B.transpose(1, 2))  # (B, R, D_in), (B, D_out, R)
        return out


def _key(site: str) -> str:
    return site.replace(".", "__")  # module and parameter dicts refuse dots in names


def build_generator(cond_dim: int, shapes: Mapping[str, tuple[int, int]], cfg: GeneratorConfig) -> Generator:
    cls = {"mlp": MLPGenerator, "tokens": TokenGenerator, "bank": BankGenerator}[cfg.arch]
    return cls(cond_dim, shapes, cfg)


# ---------------------------------------------------------------------------------------------------
# Factor utilities: slicing, detaching, and exact distances between generated updates.


def slice_factors(factors: Mapping[str, Factors], index: slice | Tensor) -> dict[str, Factors]:
    """The factors of a subset of instances; shared (2D) factors are kept as they are."""
    def pick(t: Tensor, per_instance_dim: int) -> Tensor:
        return t[index] if t.dim() == per_instance_dim else t

    out = {}
    for s, f in factors.items():
        A, B = pick(f[0], 3), pick(f[1], 3)
        out[s] = (A, B) if len(f) == 2 else (A, B, pick(f[2], 2))
    return out


def detach_factors(factors: Mapping[str, Factors]) -> dict[str, Factors]:
    return {s: tuple(t.detach().clone() for t in f) for s, f in factors.items()}  # type: ignore[misc]


def factor_bytes(factors: Mapping[str, Factors]) -> int:
    return sum(t.numel() * t.element_size() for f in factors.values() for t in f)


def _gate(f: Factors, n: int) -> Tensor:
    """Per-instance weights of the rank components, (n, R): the bank's gate, or ones."""
    if len(f) == 3:
        return f[2]
    return f[0].new_ones(n, f[0].shape[-2])


def _cat(a: Tensor, b: Tensor, dim: int, n: int) -> Tensor:
    """Concatenate factors along the rank axis, broadcasting a shared factor to n instances if needed."""
    if a.dim() == b.dim():
        return torch.cat([a, b], dim)
    a = a.expand(n, *a.shape) if a.dim() == 2 else a
    b = b.expand(n, *b.shape) if b.dim() == 2 else b
    return torch.cat([a, b], dim)


def _batch(f: Factors) -> int | None:
    sizes = [t.shape[0] for t in f[:2] if t.dim() == 3] + ([f[2].shape[0]] if len(f) == 3 else [])
    return sizes[0] if sizes else None


def delta_distance(now: Factors, then: Factors, scaling: float = 1.0) -> Tensor:
    """||scaling (B diag(s) A - B' diag(s') A')||_F^2 per instance, (n,), exactly via Gram matrices.

    With u, v over the 2R concatenated rank components, the squared norm is
    sum_uv g_u g_v (b_u . b_v) (a_u . a_v), g = [s, -s']: a (2R x 2R) problem per instance, shared
    across instances when the bases are shared (the bank).
    """
    n = _batch(now) or _batch(then)
    if n is None:
        raise ValueError("delta_distance needs per-instance factors or gates on at least one side")
    A = _cat(now[0], then[0], -2, n)  # ([n,] 2R, D_in)
    B = _cat(now[1], then[1], -1, n)  # ([n,] D_out, 2R)
    g = torch.cat([_gate(now, n), -_gate(then, n)], -1)  # (n, 2R)
    M = (A @ A.transpose(-1, -2)) * (B.transpose(-1, -2) @ B)  # ([n,] 2R, 2R)
    if M.dim() == 2:
        return scaling ** 2 * torch.einsum("nu,uv,nv->n", g, M, g)
    return scaling ** 2 * torch.einsum("nu,nuv,nv->n", g, M, g)


def delta_gram(f: Factors, scaling: float = 1.0) -> Tensor:
    """<dW_i, dW_j>_F for all pairs of instances, (n, n), exactly via Gram matrices."""
    n = _batch(f)
    if n is None:
        raise ValueError("delta_gram needs per-instance factors or gates")
    g = _gate(f, n)  # (n, R)
    A, B = f[0], f[1]
    if A.dim() == 2 and B.dim() == 2:
        M = (A @ A.T) * (B.T @ B)  # (R, R)
        return scaling ** 2 * (g @ M @ g.T)
    A = A.expand(n, *A.shape) if A.dim() == 2 else A
    B = B.expand(n, *B.shape) if B.dim() == 2 else B
    ga = torch.einsum("iud,jvd->ijuv", A, A)  # (n, n, R, R)
    gb = torch.einsum("ieu,jev->ijuv", B, B)
    return scaling ** 2 * torch.einsum("iu,ijuv,jv->ij", g, ga * gb, g)
