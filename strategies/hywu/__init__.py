"""HY-WU: instance-conditioned low-rank weight generation for a frozen base.

`options.py` (its options and per-family recommendations; light), `condition.py` (condition encoders),
`generator.py` (condition -> factors), `model.py` (base + generator as one module), `memory.py`
(functional memory), `budget.py` (anchors per experience from a memory budget), `strategy.py` (the
Avalanche strategy, imported only when a run starts). The per-instance low-rank operator it shares with
the LoRA family is `strategies/lowrank.py`.
"""

from hywu_bench.memory import Budget
from hywu_bench.registry import ALL_SETTINGS, STRATEGIES
from strategies.hywu.options import TUNED, HYWUOptions

STRATEGIES.register("hywu", help="HY-WU: a frozen base adapted per instance by generated low-rank updates, "
                    "with functional memory on condition anchors", settings=ALL_SETTINGS, options=HYWUOptions,
                    builder="strategies.hywu.strategy:build_hywu", tuned=TUNED,
                    budget=Budget("anchors_per_experience", per="experience",
                                  sizer="strategies.hywu.budget:anchor_costs"))
