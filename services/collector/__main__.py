"""``python -m services.collector``: see ``services/collector/cli.py``."""

from services.collector.cli import main

main()
