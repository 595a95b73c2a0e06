#!/bin/sh
# Fashion-MNIST comes from Debian's `dataset-fashion-mnist` (MIT). Install it when missing and
# when we may (root with apt-get); otherwise say what to run. Tests that need it skip with a reason.
DIR=/usr/share/datasets/fashion-mnist
if [ -f "$DIR/train-images-idx3-ubyte.gz" ]; then exit 0; fi
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "installing Debian package dataset-fashion-mnist ..."
  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
    || echo "warning: could not install dataset-fashion-mnist; Fashion-MNIST features will be unavailable"
else
  echo "note: Fashion-MNIST is not installed; run: sudo apt-get install dataset-fashion-mnist"
fi
exit 0
