"""Training on several devices with the backend's own engine: `tf.distribute` or `keras.distribution`.

`strategy_scope(name, cpu_devices)` opens what `train.py --distribute` asks
for: `"mirrored"`, `tf.distribute.MirroredStrategy` over the local GPUs (or
over `cpu_devices` logical CPU devices where there are none: tests and
laptops) on TensorFlow, `keras.distribution.DataParallel` over the local
devices on JAX. Models built and compiled inside train data-parallel with
`--batch-size` the global batch.

`token_share(labels)` keeps the masked loss a mean over the real tokens of
the *global* batch: Keras averages each replica's loss (its own tokens'
mean) over replicas; scaling a replica's loss by its share of the real
tokens (times the number of replicas) makes the sum of the replicas'
gradients the gradient of the global token mean, as on one device.
"""

import contextlib

import keras

from keras_transformer.vocabulary import PAD_ID

STRATEGIES = ("none", "mirrored")


def configure_cpu_devices(count):
    """Split the CPU into `count` logical devices; must run before TensorFlow or JAX starts computing."""
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError as error:  # already initialized
            raise ValueError(f"`cpu_devices` must be set before TensorFlow starts: {error}") from None
    elif keras.backend.backend() == "jax":
        import jax

        if len(jax.devices("cpu")) != count:
            raise ValueError(
                f"`cpu_devices` {count} on JAX: start Python with "
                f"XLA_FLAGS=--xla_force_host_platform_device_count={count} (JAX has {len(jax.devices('cpu'))})"
            )


@contextlib.contextmanager
def strategy_scope(name, cpu_devices=None):
    """A scope in which models are built, compiled and trained with strategy `name`; yields a description."""
    if name not in STRATEGIES:
        raise ValueError(f"`distribute` must be one of {STRATEGIES}. Received: distribute={name!r}")
    if cpu_devices:
        configure_cpu_devices(cpu_devices)
    if name == "none":
        yield "one device"
        return
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = [device.name for device in tf.config.list_logical_devices("GPU")]
        if not devices:
            devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield f"tf.distribute.MirroredStrategy over {len(devices)} devices ({', '.join(devices)})"
    elif backend == "jax":
        devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        try:
            yield f"keras.distribution.DataParallel over {len(devices)} devices"
        finally:
            keras.distribution.set_distribution(previous)
    else:
        raise ValueError(f"`distribute` {name!r} is for the TensorFlow and JAX backends, not {backend}.")


def token_share(labels, pad_id=PAD_ID):
    """This replica's real tokens x replicas / the global batch's real tokens (1 outside `tf.distribute`)."""
    if keras.backend.backend() != "tensorflow":
        return 1.0
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return 1.0
    local = tf.reduce_sum(tf.cast(tf.not_equal(labels, pad_id), "float32"))
    total = context.all_reduce(tf.distribute.ReduceOp.SUM, local)
    return tf.stop_gradient(local * context.num_replicas_in_sync / tf.maximum(total, 1.0))


def build_under_strategy(model, fit_arguments):
    """Build `model` (and its compiled loss and metrics) on one batch of `fit_arguments` under `tf.distribute`.

    Keras otherwise builds it on the first distributed batch averaged over
    replicas (`strategy.reduce("MEAN")`), which makes token ids float32.
    """
    if keras.backend.backend() != "tensorflow":
        return
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return
    x, y = fit_arguments["x"], fit_arguments.get("y")
    if isinstance(x, tf.data.Dataset):
        x, y = next(iter(x.take(1)))[:2]
    else:
        size = fit_arguments.get("batch_size") or 32
        x = {key: value[:size] for key, value in x.items()} if isinstance(x, dict) else x[:size]
        y = y[:size]
    model.test_on_batch(x, y)
    model.reset_metrics()


def shard_evenly(fit_arguments):
    """`fit` arguments whose batches split evenly over `keras.distribution`'s devices (JAX).

    JAX shards each batch over the devices and refuses a batch whose size
    the device count does not divide (a length bucket's last batch, the
    last batch of arrays). Each batch is cut to a multiple of the device
    count: per epoch, at most `devices - 1` pairs of such a batch are left
    out. Arrays become a `tf.data` stream of `batch_size` batches for this.
    Other backends and one device: unchanged.
    """
    distribution = keras.distribution.distribution() if keras.backend.backend() == "jax" else None
    if distribution is None or len(distribution.device_mesh.devices.flatten()) == 1:
        return fit_arguments
    import tensorflow as tf

    devices = len(distribution.device_mesh.devices.flatten())
    arguments = dict(fit_arguments)
    batch_size = arguments.pop("batch_size", None) or 32

    def batches(x, y=None):
        if isinstance(x, tf.data.Dataset):
            return x
        return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)

    def cut(x, y):
        rows = tf.shape(y)[0] // devices * devices
        return tf.nest.map_structure(lambda t: t[:rows], x), y[:rows]

    def even(dataset):
        return dataset.map(cut).filter(lambda x, y: tf.shape(y)[0] > 0)

    arguments["x"] = even(batches(arguments["x"], arguments.pop("y", None)))
    validation = arguments.get("validation_data")
    if validation is not None:
        arguments["validation_data"] = even(batches(*validation) if isinstance(validation, tuple) else validation)
    return arguments
