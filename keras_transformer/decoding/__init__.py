"""Autoregressive decoding over the model's cached step (`call_with_cache`)."""

from keras_transformer.decoding.beam import LENGTH_PENALTY_FORMS, beam_search, check_length_penalty_form, length_penalty
from keras_transformer.decoding.greedy import filter_logits, greedy_search, sample
from keras_transformer.decoding.generate import GenerationSettings, Generator, compile_decoder
