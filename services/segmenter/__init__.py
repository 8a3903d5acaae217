"""The segmenter service."""
