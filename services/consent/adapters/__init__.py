"""Adapters of the consent service: SQL (store, outbox, relay lease), Kafka (outbox relay,
requests consumer), HTTP (the export's calls to the other services)."""
