"""What an Avalanche strategy class keeps on itself (DER's buffer, ER-ACE's storage policy, LaMAML's
learnt learning rates), beside its plugins: counted as stored memory and captured in checkpoints."""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

from hywu_bench.training import plugin_memory


@functools.cache
def template_fields() -> frozenset[str]:
    """The attributes a plain SupervisedTemplate sets when it is built."""
    import torch
    from avalanche.training.templates import SupervisedTemplate

    from hywu_bench.training import quiet_evaluator

    # No random initialisation: asked first in the middle of a run, this must not move the run's RNG.
    weight = torch.zeros(1, requires_grad=True)
    template = SupervisedTemplate(model=torch.nn.Identity(), optimizer=torch.optim.SGD([weight], lr=0.1),
                                  evaluator=quiet_evaluator())
    return frozenset(vars(template))


class ZooStateMixin:
    """The class's own fields: every field a plain template does not have (those its constructor set and
    any it added while training; a plain template sets all of its own in its constructor), but those the
    catalogue says the strategy rebuilds itself (`not_state`: loaders rebuilt at every experience,
    configuration)."""

    not_state: tuple[str, ...] = ()

    @property
    def own_fields(self) -> list[str]:
        harness = {"resume_refusal", "relearn_first", "precision", "scenario_info", "not_state", "own_memory_kinds",
                   "capture_model_fields"}
        return sorted(set(vars(self)) - template_fields() - harness - set(self.not_state))

    def strategy_state(self) -> dict[str, Any]:
        from hywu_bench.checkpoint import capture

        return {**super().strategy_state(), "own": capture(self, self.own_fields)}

    def load_strategy_state(self, state: dict[str, Any]) -> None:
        from hywu_bench.checkpoint import restore_vars

        super().load_strategy_state(state)
        restore_vars(self, state["own"], self)

    def memory_bytes(self) -> Any:
        """The plugins' memory and the class's own fields, by kind; not the last minibatch's replayed inputs
        and outputs (`mb_buffer_x`, DER's `batch_logits`)."""
        plugins = {id(p) for p in self.plugins}  # counted as plugins already (SCR keeps its ReplayPlugin too)
        kept = {name: getattr(self, name) for name in self.own_fields if not name.startswith(("mb_", "batch_"))}
        own = SimpleNamespace(**{k: v for k, v in kept.items() if id(v) not in plugins})
        own.memory_kinds = getattr(self, "own_memory_kinds", {})
        return super().memory_bytes() + plugin_memory(own, self.model)
