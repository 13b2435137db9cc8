"""keras-transformer: the Transformer of "Attention Is All You Need" in Keras 3."""

# TensorFlow's C++ start-up lines (absl, oneDNN, CUDA) are held back while Keras
# loads it; `KT_NATIVE_LOGS=1` shows them (keras_transformer/quiet.py).
from keras_transformer import quiet

quiet.configure_environment()
with quiet.native_stderr_filtered():
    import keras

    if keras.backend.backend() == "tensorflow":
        import tensorflow as _tf

        _tf.config.list_physical_devices()  # looks for a GPU now (cuInit), not at the first op

from keras_transformer import callbacks, data, layers, losses, metrics, models, optimizers, run_directory, schedules
from keras_transformer.vocabulary import END_ID, PAD_ID, RESERVED_TOKENS, START_ID, UNKNOWN_ID
from keras_transformer.fine_tuning import freeze, unfreeze
from keras_transformer.models import (
    Transformer,
    TransformerClassifier,
    TransformerDecoder,
    TransformerEncoder,
    TransformerEncoderModel,
    TransformerLM,
    TransformerMaskedLM,
    TransformerTagger,
)

__version__ = "0.1.0"


def __getattr__(name):
    # `Translator` needs TensorFlow (its tokenizers); the layers and models do not, so it loads on first use.
    if name == "Translator":
        from keras_transformer.translator import Translator

        return Translator
    raise AttributeError(f"module 'keras_transformer' has no attribute {name!r}")
