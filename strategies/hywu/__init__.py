"""HY-WU: instance-conditioned low-rank weight generation for a frozen base (see strategies/hywu/*.py)."""
