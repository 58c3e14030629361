"""CLI command groups, one module per capability (registered by tetrapipe.cli)."""
