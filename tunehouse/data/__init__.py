"""Datasets: JSONL parsing, validation with precise messages, rendering into tokens + loss masks, statistics."""
