"""`python -m hywu_bench` is the `hywu-bench` command."""

from hywu_bench.cli import main

main()
