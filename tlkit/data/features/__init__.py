"""Features: extraction from a frozen backbone, the feature cache, the few-shot prototype classifier."""
