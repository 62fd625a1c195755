"""``python -m services.lagmonitor [serve|show ...]``: the ``lag`` commands without the
main CLI. With no command it serves, configured by the LAGMONITOR_* environment,
which is how the supervisor and the container image start it."""

import sys

from services.lagmonitor.cli import lag_app

lag_app(args=sys.argv[1:] or ["serve"], prog_name="python -m services.lagmonitor")
