"""``python -m batchgate`` is the ``batchgate`` command."""

from batchgate.cli import main

main()
