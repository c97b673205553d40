"""TensorFlow and Keras, imported lazily in ONE place with a fix-it message and quiet logs."""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import ConfigError

FIX_IT = "TensorFlow is not installed; the conversion tool needs it: pip install 'edge-agent[convert]'"


def tf() -> Any:
    """The ``tensorflow`` module, with its C++ and Python logging turned down to errors."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    try:
        import tensorflow
    except ImportError:
        raise ConfigError(FIX_IT) from None
    tensorflow.get_logger().setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)
    return tensorflow


def keras() -> Any:
    """The ``keras`` module (Keras 3 on the TensorFlow backend), without its progress bars."""
    tf()
    try:
        import keras as k
    except ImportError:
        raise ConfigError(FIX_IT) from None
    k.utils.disable_interactive_logging()
    return k
