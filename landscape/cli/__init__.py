"""The ``landscape`` command."""

from landscape.cli.main import main  # noqa: F401
