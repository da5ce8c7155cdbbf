"""tunehouse: self-hosted fine-tuning that speaks the OpenAI API."""

__version__ = "0.1.0"
