"""HY-WU: instance-conditioned low-rank weight generation for a frozen base.

`operator.py` (per-instance low-rank layers), `generator.py` (condition -> factors), `condition.py`
(condition encoders), `model.py` (base + generator as one module), `memory.py` (functional memory),
`strategy.py` (the Avalanche strategy, registered as `hywu`).
"""

from strategies.hywu import strategy  # noqa: F401
