"""The delivery service: segment membership to third-party destinations, as signed webhooks."""
