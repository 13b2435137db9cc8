"""keras-transformer: the Transformer of "Attention Is All You Need" in Keras 3."""

from keras_transformer import callbacks, data, layers, losses, metrics, models, optimizers, run_directory, schedules
from keras_transformer.layers.masks import END_ID, PAD_ID, START_ID, UNKNOWN_ID
from keras_transformer.models import Transformer, TransformerDecoder, TransformerEncoder

__version__ = "0.1.0"
