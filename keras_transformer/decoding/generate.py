"""`Transformer.generate`: argument checks and compiled decoders by settings."""

import keras
import numpy as np
from keras import ops

from keras_transformer.decoding.beam import beam_search
from keras_transformer.decoding.greedy import greedy_search, sample

def _compile(model, function, seed_generator=None):
    """Compile a decoding function `function(ids)` for the current backend.

    TensorFlow: `tf.function` (one graph per input shape). JAX: `jax.jit` over
    a stateless call, the model's variable values (and the sampling seed
    state) passed in as arguments, so the compiled loop does not capture
    them as constants and sees later weight updates. PyTorch runs eagerly.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function, reduce_retracing=True)
    if backend == "jax":
        import jax

        variables = list(model.variables)
        if seed_generator is not None:
            variables.append(seed_generator.state)

        @jax.jit
        def stateless(values, ids):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return function(ids)

        return lambda ids: stateless([v.value for v in variables], ids)
    return function


SEQ2SEQ = {"greedy": greedy_search, "beam": beam_search, "sample": sample}


class Generator:
    """The compiled decoding functions of one model, built on first use.

    A plain object, so Keras does not track what it holds: sampling's seed
    generators are not model state and are not saved with it.

    Args:
        model: the model (`max_sequence_length` and `_check_token_ids`).
        vocabulary_size: its output vocabulary (checks `top_k`).
        searches: `{"greedy": f, "sample": f, ...}` over `(model, ids,
            max_length, ...)`; by default the encoder-decoder searches.
        input_name: what the ids are called in error messages.
        static_length: compile one function per input length (the
            searches need it static), not one for all lengths.
    """

    def __init__(self, model, vocabulary_size=None, searches=None, input_name="encoder_token_ids", static_length=False):
        self.model = model
        self.static_length = static_length
        self.vocabulary_size = vocabulary_size or model.target_vocabulary_size
        self.searches = searches or SEQ2SEQ
        self.input_name = input_name
        self.functions = {}

    def _check(self, max_length, method, beam_size, temperature, top_k, top_p):
        limit = self.model.max_sequence_length
        if not 0 < max_length <= limit:
            raise ValueError(
                f"`max_length` must be in [1, {limit}] (max_sequence_length). Received: max_length={max_length}"
            )
        if method not in self.searches:
            raise ValueError(
                f"Unknown decoding method. Expected one of {tuple(self.searches)}. Received: method={method!r}"
            )
        if method == "beam" and (not isinstance(beam_size, int) or beam_size < 1):
            raise ValueError(f"`beam_size` must be a positive integer. Received: beam_size={beam_size}")
        if method == "sample":
            if temperature <= 0:
                raise ValueError(f"`temperature` must be positive. Received: temperature={temperature}")
            if top_k is not None and not 0 < top_k <= self.vocabulary_size:
                raise ValueError(f"`top_k` must be in [1, vocabulary size]. Received: top_k={top_k}")
            if top_p is not None and not 0 < top_p <= 1:
                raise ValueError(f"`top_p` must be in (0, 1]. Received: top_p={top_p}")

    def _build(self, method, max_length, beam_size, length_penalty, temperature, top_k, top_p):
        model, search = self.model, self.searches[method]
        if method == "greedy":
            return _compile(model, lambda ids: search(model, ids, max_length)), None
        if method == "beam":
            return _compile(model, lambda ids: search(model, ids, max_length, beam_size, length_penalty)), None
        seed_generator = keras.random.SeedGenerator(0)  # reseeded before each call
        function = _compile(
            model,
            lambda ids: search(model, ids, max_length, seed_generator, temperature, top_k, top_p),
            seed_generator,
        )
        return function, seed_generator

    def __call__(
        self,
        encoder_token_ids,
        max_length=None,
        method="greedy",
        beam_size=4,
        length_penalty=0.6,
        temperature=1.0,
        top_k=None,
        top_p=None,
        seed=None,
    ):
        max_length = max_length or self.model.max_sequence_length
        self._check(max_length, method, beam_size, temperature, top_k, top_p)
        encoder_token_ids = ops.convert_to_tensor(encoder_token_ids)
        self.model._check_token_ids(self.input_name, encoder_token_ids)
        settings = {
            "greedy": (),
            "beam": (beam_size, float(length_penalty)),
            "sample": (float(temperature), top_k, top_p),
        }[method]
        key = (method, max_length, *settings)
        if self.static_length:
            key += (encoder_token_ids.shape[1],)
        if key not in self.functions:
            self.functions[key] = self._build(method, max_length, beam_size, length_penalty, temperature, top_k, top_p)
        function, seed_generator = self.functions[key]
        if seed_generator is not None:
            seed = int(np.random.randint(0, 2**31 - 1)) if seed is None else seed
            state = seed_generator.state
            state.assign(ops.cast(ops.convert_to_tensor([seed, 0]), state.dtype))
        return function(encoder_token_ids)
