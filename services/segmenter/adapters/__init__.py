"""Adapters of the segmenter: Redis, SQLite, Kafka and faust, each named by its technology."""
