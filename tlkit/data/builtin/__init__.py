"""The built-in offline data sets: Fashion-MNIST (IDX files), scikit-learn digits, tweets."""
