"""``python -m services.readmodel``: the read model's consumer and query API."""

from services.readmodel.cli import main

main()
