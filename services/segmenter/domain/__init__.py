"""The segmenter's pure core: consent, features, segments and membership decisions (no I/O)."""
