"""Serving: the inference engine (a Llama-family decoder with continuous batching and LoRA adapters)."""
