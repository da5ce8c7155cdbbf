"""Training recipes. One file per method, readable top to bottom."""
