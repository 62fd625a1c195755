"""``python -m services.link``: the link and sign-in API."""

from services.link.cli import main

main()
