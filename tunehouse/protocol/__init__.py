"""OpenAI wire objects as pydantic models, one module per resource, fields in the spec's order.

Source of truth: openai/openai-openapi `openapi.yaml` and the `openai` SDK's types. Extensions
(fields OpenAI does not have) are fenced under a comment in each model.
"""
