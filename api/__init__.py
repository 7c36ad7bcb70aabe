"""The HTTP API: FastAPI routes, schemas and auth. Thin: it translates and delegates."""
