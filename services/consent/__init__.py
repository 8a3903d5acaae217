"""The consent service: system of record for per-purpose consent, erasure and access requests."""
