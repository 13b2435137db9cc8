"""keras-transformer: the Transformer of "Attention Is All You Need" in Keras 3."""

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
