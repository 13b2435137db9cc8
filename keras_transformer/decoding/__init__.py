"""Autoregressive decoding over the model's cached step (`call_with_cache`)."""

from keras_transformer.decoding.beam import beam_search, length_penalty
from keras_transformer.decoding.greedy import filter_logits, greedy_search, sample
from keras_transformer.decoding.generate import GenerationSettings, Generator, compile_decoder
