"""HTTP API of the delivery service."""
