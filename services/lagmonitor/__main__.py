"""``python -m services.lagmonitor``: the ``lag`` commands without the main CLI."""

from services.lagmonitor.cli import main

main()
