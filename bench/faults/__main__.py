"""``python -m bench.faults``: see the package docstring."""

from bench.faults import main

main()
