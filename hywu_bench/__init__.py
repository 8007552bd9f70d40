"""hywu-bench: a continual-learning benchmark harness for HY-WU and its baselines."""

__version__ = "0.1.0"
