"""Generic data sources: folders, CSV, NumPy, text files, TFDS; `LabeledData`, splits, pipelines."""
