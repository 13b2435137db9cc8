"""`generate` of every model: its settings (declared once), their checks, compiled decoders."""

import dataclasses

import keras
import numpy as np
from keras import ops

from keras_transformer.checks import check_bool, check_finite
from keras_transformer.decoding.beam import beam_search, check_length_penalty_form
from keras_transformer.decoding.greedy import greedy_search, sample
from keras_transformer.options import from_kwargs
from keras_transformer.vocabulary import PAD_ID, UNKNOWN_ID


def compile_decoder(model, function, seed_generator=None):
    """Compile a decoding function `function(ids)` for the current backend.

    What `generate` runs; public so benchmarks time the same compiled loop.

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


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """How `generate` decodes: the keyword arguments of every model's `generate`.

    Attributes:
        max_length: the most tokens per row (end token, and a language
            model's prompt, included), in `[1, max_sequence_length]`;
            `None`: the model's `max_sequence_length`.
        method: `"greedy"`, `"beam"` (encoder-decoder only) or `"sample"`.
        beam_size: beams per sentence (`"beam"`; the paper used 4).
        length_penalty: GNMT's alpha (`"beam"`; the paper used 0.6).
        length_penalty_form: `"gnmt"` or `"length"` (`"beam"`; see
            `keras_transformer.decoding.length_penalty`).
        exact_stop: `"beam"` stops a sentence only once no live beam could
            beat its finished hypotheses at any length up to `max_length`
            (see `keras_transformer.decoding.beam_search`).
        temperature, top_k, top_p: the sampling distribution (`"sample"`;
            see `keras_transformer.decoding.sample`).
        seed: an int for reproducible samples (`"sample"`).
    """

    max_length: int = None
    method: str = "greedy"
    beam_size: int = 4
    length_penalty: float = 0.6
    length_penalty_form: str = "gnmt"
    exact_stop: bool = False
    temperature: float = 1.0
    top_k: int = None
    top_p: float = None
    seed: int = None

    @classmethod
    def from_kwargs(cls, **kwargs):
        """Settings from `generate`'s keyword arguments; unknown names are a `ValueError`."""
        return from_kwargs(cls, kwargs, "`generate` argument(s)")

    def key(self):
        """What the compiled decoder depends on (not the seed, which is fed at each call)."""
        settings = {
            "greedy": (),
            "beam": (self.beam_size, float(self.length_penalty), self.length_penalty_form, bool(self.exact_stop)),
            "sample": (float(self.temperature), self.top_k, self.top_p),
        }[self.method]
        return (self.method, self.max_length, *settings)


class Generator:
    """The compiled decoding functions of one model, built on first use.

    A plain object, so Keras does not track what it holds: sampling's seed
    generators are not model state and are not saved with it.

    Args:
        model: the model (`max_sequence_length` and `check_token_ids`).
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
        self.input_vocabulary_size = getattr(model, "source_vocabulary_size", self.vocabulary_size)
        self.searches = searches or SEQ2SEQ
        self.input_name = input_name
        self.functions = {}

    def _check(self, settings):
        limit = self.model.max_sequence_length
        max_length = settings.max_length
        if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or not 0 < max_length <= limit:
            raise ValueError(
                f"`max_length` must be in [1, {limit}] (max_sequence_length). Received: max_length={settings.max_length}"
            )
        if settings.method not in self.searches:
            raise ValueError(
                f"Unknown decoding method. Expected one of {tuple(self.searches)}. Received: method={settings.method!r}"
            )
        beam_size = settings.beam_size
        if settings.method == "beam" and (not isinstance(beam_size, int) or beam_size < 1):
            raise ValueError(f"`beam_size` must be a positive integer. Received: beam_size={beam_size}")
        if settings.method == "beam":
            check_finite(settings.length_penalty, "length_penalty")
            check_length_penalty_form(settings.length_penalty_form)
        check_bool(settings.exact_stop, "exact_stop")
        if settings.method == "sample":
            temperature, top_k, top_p = settings.temperature, settings.top_k, settings.top_p
            check_finite(temperature, "temperature")
            if temperature <= 0:
                raise ValueError(f"`temperature` must be positive. Received: temperature={temperature}")
            if top_k is not None and not 0 < top_k <= self.vocabulary_size:
                raise ValueError(f"`top_k` must be in [1, vocabulary size]. Received: top_k={top_k}")
            if top_p is not None and not 0 < top_p <= 1:
                raise ValueError(f"`top_p` must be in (0, 1]. Received: top_p={top_p}")

    def _check_id_range(self, token_ids):
        """Ids outside `[0, input vocabulary)` are an error (an embedding lookup would wrap or fail)."""
        try:
            ids = ops.convert_to_numpy(token_ids)
        except Exception:  # symbolic while tracing: the values are not known here
            return
        limit = self.input_vocabulary_size
        if ids.size and (ids.min() < 0 or ids.max() >= limit):
            raise ValueError(
                f"`{self.input_name}` holds ids outside [0, {limit}) (the vocabulary): min {ids.min()}, max "
                f"{ids.max()}. Map unknown words to the unknown id ({UNKNOWN_ID}) and pad with {PAD_ID}."
            )

    def _build(self, settings):
        model, search, max_length = self.model, self.searches[settings.method], settings.max_length
        if settings.method == "greedy":
            return compile_decoder(model, lambda ids: search(model, ids, max_length)), None
        if settings.method == "beam":
            beam_size, alpha, exact_stop = settings.beam_size, settings.length_penalty, settings.exact_stop
            form = settings.length_penalty_form
            return compile_decoder(
                model,
                lambda ids: search(
                    model, ids, max_length, beam_size, alpha, exact_stop=exact_stop, length_penalty_form=form
                ),
            ), None
        seed_generator = keras.random.SeedGenerator(0)  # reseeded before each call
        temperature, top_k, top_p = settings.temperature, settings.top_k, settings.top_p
        function = compile_decoder(
            model,
            lambda ids: search(model, ids, max_length, seed_generator, temperature, top_k, top_p),
            seed_generator,
        )
        return function, seed_generator

    def __call__(self, token_ids, **kwargs):
        """Decode `token_ids` with the `GenerationSettings` named in `kwargs`."""
        settings = GenerationSettings.from_kwargs(**kwargs)
        if settings.max_length is None:
            settings = dataclasses.replace(settings, max_length=self.model.max_sequence_length)
        self._check(settings)
        token_ids = ops.convert_to_tensor(token_ids)
        self.model.check_token_ids(self.input_name, token_ids)
        self._check_id_range(token_ids)
        key = settings.key()
        if self.static_length:
            key += (token_ids.shape[1],)
        if key not in self.functions:
            self.functions[key] = self._build(settings)
        function, seed_generator = self.functions[key]
        if seed_generator is not None:
            seed = int(np.random.randint(0, 2**31 - 1)) if settings.seed is None else settings.seed
            state = seed_generator.state
            state.assign(ops.cast(ops.convert_to_tensor([seed, 0]), state.dtype))
        return function(token_ids)
