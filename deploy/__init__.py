"""The deploy tools as a package: ``from deploy import localstack, toxiproxy`` (the
fault tests drive a stack of their own with them). Each also runs as a script."""
