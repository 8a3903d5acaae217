"""Model-based segments: consent-aware clustering of minimized customer features (scikit-learn)."""
