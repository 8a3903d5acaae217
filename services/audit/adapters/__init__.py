"""The audit service's adapters: SQL stores, Kafka consumer and relay, the Ed25519 signing key."""
