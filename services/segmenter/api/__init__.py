"""The segmenter's HTTP API: one router per resource."""
