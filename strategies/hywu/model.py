"""The HY-WU model: a frozen base with low-rank operators at its adapter sites, a condition encoder and
a generator, as one nn.Module (so Avalanche's optimizer handling and `print(model)` see all of it).

Forward: read each instance's condition, generate its factors, run the base with them, clear them.
When the condition is the base's own features at a layer that runs before every adapted site's update
(e.g. the first adapted layer's base output), the features are read in the same forward pass by a hook
and the factors are set from inside it, so the condition costs no extra pass through the base.
Otherwise the features come from a separate no-gradient pass that stops at the condition layer.

The condition is read early by default (the MLP's `fc1`): inline, for free, and it keeps more of the input
than the penultimate features of a base trained on the first experience only (on held-out train data of
split-digits, class-incremental, frozen head: 0.93 accuracy with `fc1` against 0.60 with `penultimate`).

Layout (`resolve_layout`): the candidate layers are the model's `adapter_sites`, else every Linear and
Conv2d but the output layer (as peft's `all-linear` leaves out the output layer). The first Linear among
them reads the condition and stays frozen, and the generator adapts the candidates after it, and the output
layer with `head=True`. A model without a hidden Linear (the reduced ResNet-18) reads the output layer's
input, `penultimate`, and only the output layer is adapted: a feature map read earlier cannot be
rehearsed, and on a CIFAR-shaped stand-in the regulariser that then replaced rehearsal forgot most of each
experience (docs/hywu.md). Sites given by name are adapted as given, with the condition read at the first
of them.

Rehearsal through the model: when the condition is a Linear's output (or the output layer's input) that
every path to the logits goes through, and every site runs after it ("rehearsable"), a stored anchor is
that feature for its instance, so the rest of the adapted model can be run from it: `forward(...,
rehearse=True)` appends the anchors' logits to the batch's (latent replay, Pellegrini et al. 2020, through
the generated updates).
"""

from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import Tensor, nn

from strategies.hywu.condition import EMBED_EPS, ConditionEncoder, FeatureReader
from strategies.hywu.generator import BankGenerator, GeneratorConfig, build_generator, slice_factors
from strategies.lowrank import Factors, LowRankSite, _LowRankLayer, inject, site_shapes

log = logging.getLogger(__name__)


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv2d layers in module order (not those inside a low-rank wrapper)."""
    wrapped = [name for name, m in model.named_modules() if isinstance(m, _LowRankLayer)]
    return [(name, m) for name, m in model.named_modules() if name and isinstance(m, (nn.Linear, nn.Conv2d))
            and not any(name == w or name.startswith(w + ".") for w in wrapped)]


def output_layer(model: nn.Module) -> str:
    """The output layer: the last Linear registered in the model (the last Conv2d when there is no Linear),
    the layer peft's `all-linear` leaves out."""
    layers = _layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer to adapt")
    linear = [name for name, m in layers if isinstance(m, nn.Linear)]
    return linear[-1] if linear else layers[-1][0]


def default_sites(model: nn.Module) -> tuple[str, ...]:
    """peft's `all-linear` for Linear and Conv2d: every layer the operator can wrap but the output layer
    (and the projections inside an nn.MultiheadAttention, which calls their weights directly)."""
    head = output_layer(model)
    attention = [name for name, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    return tuple(name for name, m in _layers(model)
                 if name != head and not any(name.startswith(a + ".") for a in attention)
                 and (isinstance(m, nn.Linear) or (m.groups == 1 and m.padding_mode == "zeros")))


def resolve_layout(model: nn.Module, sites: Sequence[str], head: bool,
                   condition_layer: str) -> tuple[tuple[str, ...], str]:
    """(site patterns, condition layer).

    Sites given are used as they are, and `condition_layer="auto"` is then the first of them (read from its
    base output). Otherwise the candidates are the model's `adapter_sites`, else `default_sites`, in module
    order; the condition layer (`condition_layer`, or by default the first Linear among them, else the
    output layer's input, 'penultimate', else the first of them) stays frozen, and the candidates after it
    are adapted (none after 'penultimate'). A Linear's output is a flat vector, so anchors read there can
    be run on through the adapted layers (rehearsal); so is the output layer's input. `head` adds the
    output layer."""
    if sites:
        patterns, layer = tuple(sites), condition_layer
    else:
        declared = set(getattr(model, "adapter_sites", ())) or set(default_sites(model))
        layers = _layers(model)
        candidates = [name for name, _ in layers if name in declared]
        if not candidates:
            raise ValueError(f"{type(model).__name__} has no Linear or Conv2d layer besides its output layer "
                             f"'{output_layer(model)}'; pass sites=(...)")
        linear = [name for name, m in layers if name in declared and isinstance(m, nn.Linear)]
        if condition_layer != "auto":
            layer = condition_layer
        elif linear:
            layer = linear[0]
        else:  # no hidden Linear: the output layer's flat input, which anchors can be rehearsed from
            layer = "penultimate" if isinstance(model.get_submodule(output_layer(model)), nn.Linear) else candidates[0]
        order = [name for name, _ in model.named_modules()]
        after = len(order) if layer == "penultimate" else order.index(layer) if layer in order else -1
        patterns = tuple(name for name in candidates if order.index(name) > after)
    if head:
        name = output_layer(model)
        patterns += () if name in patterns else (name,)
    if not patterns:
        raise ValueError(f"no adapter sites in {type(model).__name__} after the condition layer '{layer}'; "
                         "pass sites=(...) or head=True")
    return patterns, layer


class HYWUModel(nn.Module):
    def __init__(self, base: nn.Module, *, sites: Sequence[str] = (), head: bool = False, rank: int = 2,
                 alpha: float = 8.0, trainable: Sequence[str] = (), generator: GeneratorConfig | None = None,
                 condition: str = "features", condition_layer: str = "auto",
                 input_shape: tuple[int, ...] | None = None, condition_dim: int = 0, n_tasks: int = 64):
        super().__init__()
        patterns, layer = resolve_layout(base, sites, head, condition_layer)
        self.base = base
        self.output_layer = output_layer(base)
        self.trainable = tuple(t for t in trainable if t not in ("", "none"))
        modules = dict(base.named_modules())
        unknown = [t for t in self.trainable if t not in modules]
        if unknown:
            raise ValueError(f"trainable modules {unknown} are not in the model; modules: "
                             f"{', '.join(n for n in modules if n and '.' not in n)}")
        for name, p in base.named_parameters():
            p.requires_grad_(any(name.startswith(t + ".") for t in self.trainable))
        self._sites: dict[str, LowRankSite] = inject(base, patterns, rank, alpha)  # plain dict: not re-registered
        log.info("HY-WU adapts %s of %s", ", ".join(self._sites), type(base).__name__)
        layer = next(iter(self._sites)) if layer == "auto" else layer
        self.condition = ConditionEncoder(condition, base, layer=layer, input_shape=input_shape,
                                          condition_dim=condition_dim, n_tasks=n_tasks, head=self.output_layer)
        self.generator = build_generator(self.condition.dim, site_shapes(self._sites), generator or GeneratorConfig())
        self.last_factors: dict[str, Factors] | None = None  # of the last forward: the batch, then any extra
        self._inline: bool | None = None
        self._rehearsable: bool | None = None
        self.register_buffer("base_frozen", torch.tensor(True))  # False while the strategy trains the base

    @property
    def sites(self) -> dict[str, LowRankSite]:
        return self._sites

    @property
    def head_only(self) -> bool:
        """True when the output layer is the only adapted site."""
        return tuple(self._sites) == (self.output_layer,)

    @property
    def last_factors(self) -> dict[str, Factors] | None:
        """The factors of the last forward (the batch, then any extra), in the generator's form."""
        if self._last_grouped:  # inference kept the bank's gates per basis: repeat them now
            self._last_factors = self.generator.expand(self._last_factors)  # type: ignore[attr-defined]
            self._last_grouped = False
        return self._last_factors

    @last_factors.setter
    def last_factors(self, factors: dict[str, Factors] | None) -> None:
        self._last_factors, self._last_grouped = factors, False

    def train(self, mode: bool = True) -> "HYWUModel":
        """The frozen base stays in eval mode (no batch-norm statistics drift); trainable parts follow."""
        super().train(mode)
        if not bool(self.base_frozen):
            return self
        self.base.eval()
        for name in self.trainable:
            self.base.get_submodule(name).train(mode)
        return self

    def condition_raw(self, x: Tensor, token: Tensor | None = None, task: Tensor | None = None) -> dict[str, Tensor]:
        """The frozen part of the instances' conditions (what anchors store)."""
        return self.condition.raw(x, token, task)

    def generate(self, raw: dict[str, Tensor]) -> dict[str, Factors]:
        return self.generator(self.condition.embed(raw))

    def forward(self, x: Tensor, token: Tensor | None = None, task: Tensor | None = None,
                extra: dict[str, Tensor] | None = None, rehearse: bool = False) -> Tensor:
        """Logits (B, n_classes). `extra`: raw anchor conditions generated in the same call (training).
        `rehearse` (needs `rehearsable`): the anchors of `extra` also run from the condition layer on, and
        their logits follow the batch's, (B + M, n_classes)."""
        n = x.shape[0]
        if self._inline is None:
            self._inline = self._can_read_inline(x)
        if rehearse and not (extra and self.rehearsable(x)):
            raise ValueError("rehearse=True needs anchors (extra) and a rehearsable model")
        # A probe watching the sites (forward pre-hooks, e.g. hywu_bench.interference) must find the factors
        # set before each site runs: then read the features in a separate pass (same outputs).
        inline = self._inline and not any(site._forward_pre_hooks for site in self._sites.values())
        try:
            if not inline and not rehearse:
                self._set_factors(self.condition.raw(x, token, task), extra, n)
                return self.base(x)
            done = []

            def read(out: Tensor) -> Tensor | None:
                if done:
                    return None
                done.append(True)
                raw = self.condition.raw(x, token, task, features=FeatureReader.pool(out))
                self._set_factors(raw, extra, n, every_site=rehearse)
                if rehearse:  # the anchors join the batch here: (B + M, D)
                    return torch.cat([out, extra["features"].to(out.dtype)])
                return None

            handle = self.condition.reader.attach(read)
            try:
                return self.base(x)
            finally:
                handle.remove()
        finally:
            for site in self._sites.values():
                site.clear_factors()

    def rehearsable(self, x: Tensor | None = None) -> bool:
        """True when anchors can be run from the condition layer on (see the module docstring); decided once,
        on the batch `x` (at least two instances), by checking that replacing the condition layer's output
        with another instance's gives that instance's output."""
        if self._rehearsable is None and x is not None and x.shape[0] >= 2:
            self._rehearsable = self._check_rehearsable(x)
        return bool(self._rehearsable)

    @torch.no_grad()
    def _check_rehearsable(self, x: Tensor) -> bool:
        reader = self.condition.reader
        if reader is None:
            return False
        if not reader.reads_input and (not isinstance(reader.module, nn.Linear)  # a site's base output: no
                                       or any(site.base_layer is reader.module for site in self._sites.values())):
            return False
        if not self._can_read_inline(x):
            return False
        x = x[:8]
        captured: list[Tensor] = []
        handle = reader.attach(captured.append)
        try:
            want = self.base(x)
        finally:
            handle.remove()
        if captured[0].dim() != 2:
            return False
        handle = reader.attach(lambda feature: captured[0])
        try:
            got = self.base(torch.full_like(x, 0.5))  # another input: only the replaced output may matter
        finally:
            handle.remove()
        return bool(torch.allclose(got, want, atol=1e-5, rtol=1e-4))

    def _set_factors(self, raw: dict[str, Tensor], extra: dict[str, Tensor] | None, n: int,
                     every_site: bool = False) -> None:
        """Generate the factors of the batch's conditions `raw` (and of `extra`'s after them) and set them at
        every site: the batch's only, or the batch's and `extra`'s (`every_site`, for rehearsal)."""
        if not extra and not torch.is_grad_enabled() and isinstance(self.generator, BankGenerator):
            # Inference with the bank: fold the condition's layer norm into the coefficient net's, keep
            # the gates per basis (B, K); the same update, fewer passes over the batch.
            v = self.condition.normalised_part(raw)
            mix = (self.generator.mixing(self.condition.embed(raw)) if v is None
                   else self.generator.mixing_of_normalised(v, EMBED_EPS))
            factors = self.generator.grouped(mix)
            self._last_factors, self._last_grouped = factors, True
            for name, site in self._sites.items():
                site.set_factors(*factors[name])
            return
        if extra:
            raw = {k: torch.cat([raw[k], extra[k]]) for k in raw}
        factors = self.generate(raw)
        self.last_factors = factors
        batch = slice_factors(factors, slice(0, n)) if extra and not every_site else factors
        for name, site in self._sites.items():
            site.set_factors(*batch[name])

    @torch.no_grad()
    def _can_read_inline(self, x: Tensor) -> bool:
        """True when the condition layer's base output is ready before any site applies its update."""
        reader = self.condition.reader
        if reader is None:
            return False
        # the site whose base output (or, reading the output layer's input, whose input) is the condition
        owner = [name for name, site in self._sites.items() if reader.module in (site, site.base_layer)]
        events: list[str] = []
        handles = [reader.attach(lambda feature: events.append("<condition>"))]  # first: before a site's own
        handles += [site.register_forward_pre_hook(lambda m, i, name=name: events.append(name))
                    for name, site in self._sites.items()]
        try:
            self.base(x[:1])
        finally:
            for h in handles:
                h.remove()
        if "<condition>" not in events:
            return False
        before = events[:events.index("<condition>")]
        return all(name in owner for name in before)
