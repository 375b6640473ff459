"""batchgate: a queue-based asynchronous batch completion gateway for LLM deployments."""

__version__ = "0.1.0"
