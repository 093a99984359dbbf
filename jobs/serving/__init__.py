"""Serving: the SageMaker inference handlers, their numpy fast path and the local HTTP server."""
