"""``python -m services.actions``: see ``--help``."""

from services.actions.cli import main

main()
