"""Fine-tuning jobs: the API-side service, the durable queue worker, and the training process."""
