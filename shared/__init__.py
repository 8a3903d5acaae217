"""segwarden's shared package: event schemas, topics, settings and the Kafka, Redis and HTTP helpers."""
