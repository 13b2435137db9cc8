"""Data for training: the built-in synthetic translation task (tokenizers and
tf.data pipelines over real text arrive with their own issue)."""

from keras_transformer.data.synthetic import SyntheticTranslationTask, teacher_forcing
