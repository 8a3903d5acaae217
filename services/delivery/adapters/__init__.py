"""Adapters of the delivery service: SQLite store, Kafka inputs, HTTP webhooks."""
