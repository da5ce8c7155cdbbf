"""Base models: the embedded default, local folders, aliases."""
