"""Synchronous OpenAI-compatible gateway front: Flask app factory, blueprints, schemas."""
