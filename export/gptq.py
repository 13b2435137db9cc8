"""Int8 weights rounded against calibration activations (GPTQ) for TFLite's dynamic int8.

TFLite's dynamic-range quantizer rounds each weight matrix to int8 with one
scale per output channel (`s` = the channel's largest magnitude / 127), each
weight to its nearest step. Rounding to nearest minimises each weight's own
error, not the error of the layer's output: GPTQ (Frantar et al., 2022,
"GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
Transformers") rounds the input features of a matrix one after another and
moves each rounding error onto the features not yet rounded, weighted by the
inverse of `H = X^T X`, the Gram matrix of the layer's inputs `X` over
calibration data, so that `X W` changes as little as it can.

Here the scales stay the quantizer's (and each channel's largest weight stays
at +-127, so the quantizer computes the same scale); the model is exported with
every calibrated kernel frozen to `Q * s`, which the quantizer's own rounding
turns back into exactly `Q` (as `module.Int8Embeddings` does for the
embedding tables). The file, its ops and its speed are those of
nearest rounding; only the int8 values differ.

Calibration: the model translates the calibration sentences greedily, then
reads each with its own translation (teacher forced), padded positions left
out of `H`: the activations of free-running decoding, which the exported
`generate` reproduces.

Keras's own `model.quantize("gptq")` quantizes decoder-only stacks one block
at a time (a block taking one input) into Keras-side int4/int8 kernels; here
an encoder-decoder's kernels must come out as float values on the grid the
TFLite converter quantizes to, so the rounding is done here.
"""

import contextlib

import keras
import numpy as np
import tensorflow as tf

from keras_transformer.decoding import greedy_search
from keras_transformer.layers import MultiHeadAttention
from keras_transformer.layers.utils import dense_2d
from keras_transformer.vocabulary import END_ID, PAD_ID, START_ID

# Calibration sentences read. Multi30k "small", weight-only int8 (Keras), greedy tokens equal to float32's:
# 97.5% rounded to nearest, 98.2% by GPTQ on 1,000 sentences, 99.0% on 3,000.
GPTQ_SENTENCES = 3000
DAMPING = 0.01  # of the Gram matrix's mean diagonal, added to its diagonal (the paper's value)
BLOCK_SIZE = 128  # input features whose error updates are applied to the rest at once


def gptq_int8(kernel, gram, damping=DAMPING, block_size=BLOCK_SIZE):
    """Round a `(in, out)` kernel to int8 per output channel, against inputs of Gram matrix `gram`.

    Args:
        kernel: `(in_features, out_features)` float weights (`y = x @ kernel`).
        gram: `(in_features, in_features)` `X^T X` of the layer's inputs
            (any positive multiple of it).
        damping: added to the diagonal, times its mean, before inverting.
        block_size: features per block of deferred error updates (the
            result does not depend on it, up to float rounding).

    Returns:
        `(quantized, scale)`: `(in, out)` int8 values in [-127, 127] and the
        `(out,)` float32 scales, `scale[j]` = `max |kernel[:, j]|` / 127 (the
        converter's own per-channel scales); `quantized * scale` is the
        rounded kernel. Each output channel keeps +-127 where its largest
        weight is, so requantizing `quantized * scale` gives it back.
    """
    kernel = np.asarray(kernel, "float64")
    if kernel.ndim != 2 or gram.shape != (kernel.shape[0], kernel.shape[0]):
        raise ValueError(f"Expected a (in, out) kernel and an (in, in) Gram matrix. Received {kernel.shape}, {gram.shape}.")
    weights = kernel.T.copy()  # (out, in): one row per output channel, rounded one input feature (column) at a time
    channels, features = weights.shape
    scale = (np.abs(weights).max(axis=1) / 127.0).astype("float32")
    scale = np.where(scale > 0, scale, np.float32(1.0))
    step = scale.astype("float64")
    largest = np.abs(weights).argmax(axis=1)  # (out,): where each channel's +-127 stays
    largest_sign = np.sign(weights[np.arange(channels), largest])

    gram = np.array(gram, "float64")
    dead = np.diag(gram) == 0  # inputs that are always 0: their weights only get rounded
    gram[dead, dead] = 1.0
    gram[np.diag_indices(features)] += damping * np.mean(np.diag(gram))
    # Upper Cholesky factor of H^-1: row i holds how feature i's error moves onto the later features.
    inverse = np.linalg.cholesky(np.linalg.inv(gram)).T

    quantized = np.zeros((channels, features), "int32")
    for start in range(0, features, block_size):
        end = min(start + block_size, features)
        block = weights[:, start:end].copy()
        errors = np.zeros_like(block)
        for i in range(end - start):
            column = start + i
            values = np.clip(np.round(block[:, i] / step), -127, 127)
            values = np.where(largest == column, 127 * largest_sign, values)
            quantized[:, column] = values
            errors[:, i] = (block[:, i] - values * step) / inverse[column, column]
            block[:, i:] -= np.outer(errors[:, i], inverse[column, column:end])
        weights[:, end:] -= errors @ inverse[start:end, end:]
    return quantized.T.astype("int8"), scale


class GramMatrices:
    """`X^T X` of the inputs of every `Dense` layer of a model, while inside `record()`.

    Fused projections (`MultiHeadAttention` joins the Q/K/V kernels into
    one matmul) run one `Dense` at a time inside, so each layer sees its
    own inputs. Rows of padding are left out: `record(row_masks)` maps each
    number of input rows a layer may see (batch x source length, batch x
    target length) to which of them are real.
    """

    def __init__(self, model):
        self.dense_layers = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dense)]
        self.attention_layers = [layer for layer in model._flatten_layers() if isinstance(layer, MultiHeadAttention)]
        self.gram = {}  # kernel path -> (in, in) float64
        self.rows = {}  # kernel path -> real rows of X seen
        self._row_masks = None

    @contextlib.contextmanager
    def record(self, row_masks=None):
        self._row_masks = row_masks
        for layer in self.dense_layers:
            object.__setattr__(layer, "call", self._recording_call(layer))  # shadows the class's `call`
        for layer in self.attention_layers:
            object.__setattr__(layer, "_project", lambda inputs, layers: [dense_2d(d, inputs) for d in layers])
        try:
            yield self
        finally:
            self._row_masks = None
            for layer in self.dense_layers + self.attention_layers:
                layer.__dict__.pop("call", None)
                layer.__dict__.pop("_project", None)

    def _recording_call(self, layer):
        call = type(layer).call.__get__(layer)
        path = layer.kernel.path

        def recording_call(inputs, *args, **kwargs):
            x = keras.ops.convert_to_numpy(inputs).astype("float64").reshape(-1, inputs.shape[-1])
            if self._row_masks is not None:
                if len(x) not in self._row_masks:
                    raise ValueError(f"{path}: {len(x)} input rows, none of the masked sizes {sorted(self._row_masks)}.")
                x = x[self._row_masks[len(x)]]
            if path not in self.gram:
                self.gram[path], self.rows[path] = np.zeros((x.shape[1], x.shape[1])), 0
            self.gram[path] += x.T @ x
            self.rows[path] += x.shape[0]
            return call(inputs, *args, **kwargs)

        return recording_call


def translation_gram_matrices(model, source_ids, batch_size=32, progress=None):
    """Gram matrices of a `Transformer`'s `Dense` inputs on `(N, S)` 0-padded source ids.

    Each batch of sources is translated greedily, then encoded and decoded
    (its own translations, teacher forced); padded positions are left out.
    `progress(done, total)`, if given, is called after each batch.
    """
    source_ids = np.asarray(source_ids, "int32")
    source_ids = source_ids[(source_ids != PAD_ID).any(axis=1)]
    max_length = model.max_sequence_length
    translate = tf.function(
        lambda ids: greedy_search(model, ids, max_length), input_signature=[tf.TensorSpec([None, None], tf.int32)]
    )
    grams = GramMatrices(model)
    for start in range(0, len(source_ids), batch_size):
        source = source_ids[start : start + batch_size]
        source = source[:, : np.flatnonzero((source != PAD_ID).any(axis=0)).max() + 1]  # (B, S)
        target = translate(tf.constant(source)).numpy()
        lengths = np.minimum((np.cumsum(target == END_ID, axis=1) == 0).sum(axis=1), max_length - 1)
        # START, then each translation up to its end token (exclusive), at a length other than the
        # source's, so that a layer's row count tells source rows from target rows.
        length = lengths.max() + 1
        if length == source.shape[1]:
            length += 1 if length < max_length else -1
        decoder_ids = np.zeros((len(source), length), "int32")
        decoder_ids[:, 0] = START_ID
        for row, (tokens, count) in enumerate(zip(target, np.minimum(lengths, length - 1))):
            decoder_ids[row, 1 : count + 1] = tokens[:count]
        masks = {source.size: (source != PAD_ID).reshape(-1), decoder_ids.size: (decoder_ids != PAD_ID).reshape(-1)}
        with grams.record(masks):
            encoder_output, mask = model.encode(source)
            model.decode(decoder_ids, encoder_output, mask)
        if progress is not None:
            progress(min(start + batch_size, len(source_ids)), len(source_ids))
    return grams


def gptq_kernels(model, source_ids, batch_size=32, progress=None):
    """`{kernel path: Q * s}` for every `Dense` kernel of a translation model, GPTQ-rounded.

    What to freeze the kernels to (`ExportModule(frozen_values=...)`)
    before TFLite's dynamic-int8 conversion, which then stores exactly `Q`.
    Kernels that saw no calibration input are left out (rounded to nearest
    by the converter).
    """
    grams = translation_gram_matrices(model, source_ids, batch_size, progress)
    kernels = {}
    for layer in grams.dense_layers:
        path = layer.kernel.path
        if path not in grams.gram or len(layer.kernel.shape) != 2:
            continue
        quantized, scale = gptq_int8(keras.ops.convert_to_numpy(layer.kernel), grams.gram[path])
        kernels[path] = quantized.astype("float32") * scale[None, :]
    return kernels
