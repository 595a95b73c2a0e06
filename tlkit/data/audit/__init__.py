"""The data audit: counts, corrupt files, duplicates, near duplicates and leakage across splits."""
