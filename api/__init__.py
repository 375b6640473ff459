"""The HTTP front: Flask app factory, blueprints, marshmallow schemas, error envelope."""
