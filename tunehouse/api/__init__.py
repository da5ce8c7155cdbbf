"""HTTP: FastAPI routers per OpenAI resource, auth, and the one error handler. No model code runs here."""
