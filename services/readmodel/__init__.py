"""The read model: ``social.events`` into PostgreSQL, and who is where over HTTP."""
