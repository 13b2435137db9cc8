"""Small helpers shared by the layers."""

import keras
from keras import ops


def clone_initializer(initializer):
    """A fresh copy of `initializer`, so sublayers never share one instance.

    Sharing one seeded initializer instance between sublayers makes them start
    from identical weights; cloning gives each its own.
    """
    initializer = keras.initializers.get(initializer)
    return initializer.__class__.from_config(initializer.get_config())


def dense_2d(layer, inputs):
    """`layer(inputs)` for `(B, T, d)` inputs with a known `T`, as one 2D matmul.

    Keras's TensorFlow backend runs a rank-3 by rank-2 matmul as
    `tf.tensordot`, which computes its reshapes from the runtime shape: an
    exported TFLite graph then carries shape arithmetic (`SHAPE`, `GATHER`,
    `REDUCE_PROD`, `PACK`) around every projection, splitting the XNNPACK
    delegate's partitions. Flattening with `-1` for the batch keeps every
    reshape constant when `T` is static (decoding steps, fixed-length export).
    Same result on every backend.
    """
    length, features = inputs.shape[1], inputs.shape[-1]
    if len(inputs.shape) != 3 or length is None or features is None:
        return layer(inputs)
    outputs = layer(ops.reshape(inputs, (-1, features)))  # (B*T, d)
    return ops.reshape(outputs, (-1, length, outputs.shape[-1]))  # (B, T, d')
