"""Training on several devices with the backend's own engine: `tf.distribute` or `keras.distribution`.

`strategy_scope(name, cpu_devices)` opens what `train.py --distribute` asks
for: `"mirrored"`, `tf.distribute.MirroredStrategy` over the local GPUs (or
over `cpu_devices` logical CPU devices where there are none: tests and
laptops) on TensorFlow, `keras.distribution.DataParallel` over the local
devices on JAX; `"multi-worker"`,
`tf.distribute.MultiWorkerMirroredStrategy` over the workers that
`TF_CONFIG` names (`worker_role`), each with its local GPUs or its CPU.
Models built and compiled inside train data-parallel with `--batch-size`
the global batch.

Under `"multi-worker"` every worker runs the same program; variables start
equal (the strategy broadcasts their initial values) and stay equal (every
update applies the all-reduced gradient). What one worker alone knows, the
chief's resumed weights and training state, reaches the others through
`broadcast_from_chief` and `broadcast_json`; a decision taken on a local
clock (a time limit) through `any_worker`, so all stop at the same step.

The masked loss stays a mean over the real tokens of the *global* batch
through `keras_transformer.losses.token_share`, which the models' loss
applies: every `model.fit` under a strategy gets it, not only train.py's.
"""

import contextlib
import dataclasses
import functools
import json
import os

import keras

STRATEGIES = ("none", "mirrored", "multi-worker")
TF_CONFIG_EXAMPLE = (
    'TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}\''
)


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in a `TF_CONFIG` cluster.

    Attributes:
        task_type: `"chief"` or `"worker"`.
        index: the task's index among those of its type.
        workers: the cluster's chief and workers together.
        chief: whether this process writes the run directory (the `"chief"`
            task, or worker 0 in a cluster without one).
    """

    task_type: str
    index: int
    workers: int
    chief: bool

    def __str__(self):
        duty = "chief: writes the run directory" if self.chief else "writes no run directory (the chief does)"
        return f"{self.task_type} {self.index} of a {self.workers}-worker cluster, {duty}"


def worker_role(distribute, environ=None):
    """The `WorkerRole` that `TF_CONFIG` gives this process under `"multi-worker"`; `None` otherwise.

    Reads the environment only (no TensorFlow), so a process knows its role
    before it starts anything. A missing or malformed `TF_CONFIG` is a
    `ValueError` that shows the expected form.
    """
    if distribute != "multi-worker":
        return None
    text = (os.environ if environ is None else environ).get("TF_CONFIG")
    if not text:
        raise ValueError(f"`distribute` multi-worker reads the cluster from TF_CONFIG, which is not set; e.g. "
                         f"{TF_CONFIG_EXAMPLE} on the first worker, index 1 on the second.")  # fmt: skip
    try:
        config = json.loads(text)
        cluster, task = config["cluster"], config["task"]
        task_type, index = task["type"], task["index"]
        members = {name: list(cluster.get(name) or []) for name in ("chief", "worker")}
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is not a cluster description ({error!r}); expected e.g. {TF_CONFIG_EXAMPLE}") from None
    others = sorted(set(cluster) - {"chief", "worker"})
    if others:
        raise ValueError(f"TF_CONFIG: `distribute` multi-worker trains on chief and worker tasks only, not {others}.")
    if task_type not in members or not isinstance(index, int) or not 0 <= index < len(members[task_type]):
        raise ValueError(f"TF_CONFIG: task {task_type!r} {index!r} is not in the cluster {cluster}.")
    if len(members["chief"]) > 1:
        raise ValueError(f"TF_CONFIG: a cluster has at most one chief. Received: {members['chief']}")
    chief = task_type == "chief" or (task_type == "worker" and index == 0 and not members["chief"])
    return WorkerRole(task_type, index, len(members["chief"]) + len(members["worker"]), chief)


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
    if cpu_devices and name == "multi-worker":
        raise ValueError("`cpu_devices` is for `distribute` mirrored; a multi-worker cluster trains on each "
                         "worker's GPUs, or its CPU as one device.")  # fmt: skip
    if cpu_devices:
        configure_cpu_devices(cpu_devices)
    if name == "none":
        yield "one device"
        return
    backend = keras.backend.backend()
    if name == "multi-worker":
        with _multi_worker_scope(backend) as description:
            yield description
        return
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


# The watcher of `waiting_for_the_cluster`: a small Python process of its own, because the waiting call
# holds the interpreter (no thread of this process runs until it returns).
_WATCHER = """
import json, os, signal, socket, sys, time
args = json.loads(sys.argv[1])

def listening(address):
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except (OSError, ValueError):
        return False

def interrupted(signum, frame):
    print(f"{args['prog']}: stopped by Ctrl-C while waiting for the cluster (no epoch had started).",
          file=sys.stderr, flush=True)
    os.kill(args["parent"], signal.SIGKILL)
    sys.exit(0)

signal.signal(signal.SIGINT, interrupted)
signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
start = time.monotonic()
while True:
    time.sleep(args["every"])
    if os.getppid() != args["parent"]:
        sys.exit(0)
    missing = [f"{name} ({address})" for name, address in args["others"] if not listening(address)]
    waited = f"{time.monotonic() - start:.0f} s"
    if missing:
        line = (f"Waiting for {', '.join(missing)} to start ({waited}): start the same command there, with "
                "TF_CONFIG's task set to it.")
    else:
        line = f"Waiting for every worker of the cluster to join ({waited})."
    print(line, file=sys.stderr, flush=True)
"""


def cluster_addresses(environ=None):
    """`[(task_type, index, "host:port")]` of every task `TF_CONFIG` lists (chief and workers)."""
    cluster = json.loads((os.environ if environ is None else environ)["TF_CONFIG"])["cluster"]
    return [(kind, index, address) for kind in ("chief", "worker") for index, address in enumerate(cluster.get(kind) or [])]


@contextlib.contextmanager
def waiting_for_the_cluster(role, every=30.0, prog="train.py"):
    """While this worker waits for the others (`MultiWorkerMirroredStrategy()` blocks in C++ until all have started):

    every `every` seconds a line on stderr names the tasks whose address is
    not listening yet; Ctrl-C ends the wait at once with one line (the
    blocked call would not see it until every worker had joined). A small
    watcher process does both and ends with the block. Nothing has been
    trained then: a chief stopped so leaves a run directory with no epoch,
    which its next start reuses.
    """
    import subprocess
    import sys

    others = [(f"{kind} {index}", address) for kind, index, address in cluster_addresses()
              if (kind, index) != (role.task_type, role.index)]  # fmt: skip
    arguments = json.dumps({"parent": os.getpid(), "every": every, "others": others, "prog": prog})
    watcher = subprocess.Popen([sys.executable, "-c", _WATCHER, arguments], stdin=subprocess.DEVNULL)
    try:
        yield
    finally:
        watcher.terminate()
        watcher.wait()


@contextlib.contextmanager
def _multi_worker_scope(backend):
    if backend != "tensorflow":
        raise ValueError(
            f"`distribute` multi-worker runs tf.distribute.MultiWorkerMirroredStrategy: it needs the TensorFlow "
            f"backend (KERAS_BACKEND=tensorflow), not {backend}. On JAX, `distribute` mirrored trains on one host's devices."
        )
    import tensorflow as tf

    role = worker_role("multi-worker")
    try:
        with waiting_for_the_cluster(role):
            strategy = tf.distribute.MultiWorkerMirroredStrategy()
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"`distribute` multi-worker could not start ({error}); it must start before "
                         f"TensorFlow computes anything in this process.") from None  # fmt: skip
    with _keras_multi_worker_fixes(), strategy.scope():
        yield (
            f"tf.distribute.MultiWorkerMirroredStrategy, {strategy.num_replicas_in_sync} replicas in sync; this "
            f"process: {role}"
        )


@contextlib.contextmanager
def _keras_multi_worker_fixes():
    """Three changes that let Keras 3 train under `MultiWorkerMirroredStrategy`, undone on exit.

    Keras's TensorFlow trainer (3.x) reduces each step's scalar logs with
    `strategy.reduce("MEAN", value, axis=0)` when the strategy is
    multi-worker, which fails on a scalar ("Invalid reduction dimension 0
    for input with 0 dimensions", tensorflow/tensorflow#72388); the logs are
    metric results, equal on every replica, so a mean over replicas
    (`axis=None`) is what is meant. And before each `fit` it averages the
    first distributed batch over replicas to build the model symbolically,
    which the multi-worker strategy cannot do eagerly; `build_under_strategy`
    has built everything by then, so that step is skipped for a built model.
    And creating a variable under the strategy is a collective step of
    every worker, while Keras's saving code creates a reference optimizer
    (with its iteration counter) each time it walks an object's attributes
    (its cache is written under one name and read under another): on the
    chief alone when it loads a snapshot to resume. Those attribute sets
    are made here, before the strategy, and kept.
    """
    from keras.src.backend.tensorflow import trainer
    from keras.src.saving import saving_lib

    original_skipset = saving_lib.get_attr_skipset
    skipsets = {kind: original_skipset(kind) for kind in ("Operation", "Layer", "Functional", "Sequential", "Metric",
                                                          "Optimizer", "Loss")}  # fmt: skip

    def get_attr_skipset(kind):
        if kind not in skipsets:
            skipsets[kind] = original_skipset(kind)
        return skipsets[kind]

    original_reduce = trainer.reduce_per_replica
    original_build = trainer.TensorFlowTrainer._maybe_symbolic_build

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return keras.tree.map_structure(lambda value: strategy.reduce("MEAN", value, axis=None), values)
        return original_reduce(values, strategy, reduction)

    def maybe_symbolic_build(model, iterator=None, data_batch=None):
        if iterator is not None and _fully_built(model):
            return None
        return original_build(model, iterator=iterator, data_batch=data_batch)

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    saving_lib.get_attr_skipset = get_attr_skipset
    try:
        yield
    finally:
        trainer.reduce_per_replica = original_reduce
        trainer.TensorFlowTrainer._maybe_symbolic_build = original_build
        saving_lib.get_attr_skipset = original_skipset


def _fully_built(model):
    parts = [model, model.optimizer, getattr(model, "_compile_metrics", None), getattr(model, "_compile_loss", None)]
    return all(part is None or part.built for part in parts)


def _multi_worker_strategy():
    """The `MultiWorkerMirroredStrategy` in scope, or `None`."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    if not tf.distribute.has_strategy():
        return None
    strategy = tf.distribute.get_strategy()
    return strategy if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) else None


def _all_reduce(tensors, operation="sum", first_replica_only=False):
    """`tensors` reduced over every replica of the multi-worker strategy (a collective: all workers call it).

    `operation`: `"sum"`, or `"gather"` (of scalars: a vector of every
    replica's value). With `first_replica_only`, the other replicas
    contribute zeros: a sum then gives every worker replica 0's values,
    which live on the chief.
    """
    import tensorflow as tf

    strategy = _multi_worker_strategy()
    results = _reduction(strategy, operation, first_replica_only)([tf.convert_to_tensor(t) for t in tensors])
    return [strategy.experimental_local_results(result)[0] for result in results]


@functools.lru_cache(maxsize=None)
def _reduction(strategy, operation, first_replica_only):
    """The traced function of `_all_reduce` (one per strategy and kind: a time limit calls it every step)."""
    import tensorflow as tf

    def replica_fn(values):
        context = tf.distribute.get_replica_context()
        if first_replica_only:
            first = tf.equal(context.replica_id_in_sync_group, 0)
            values = [tf.where(first, value, tf.zeros_like(value)) for value in values]
        if operation == "sum":
            return context.all_reduce(tf.distribute.ReduceOp.SUM, values)
        return [context.all_gather(tf.reshape(value, [1]), axis=0) for value in values]

    @tf.function(autograph=False, reduce_retracing=True)
    def run(values):
        return strategy.run(replica_fn, args=(values,))

    return run


def is_multi_worker():
    """Whether a `MultiWorkerMirroredStrategy` is in scope."""
    return _multi_worker_strategy() is not None


def any_worker(flag):
    """Whether `flag` is true on any worker (`flag` itself outside a multi-worker strategy)."""
    if _multi_worker_strategy() is None:
        return bool(flag)
    import tensorflow as tf

    return bool(tf.reduce_max(_all_reduce([tf.constant(int(bool(flag)), "int32")], "gather")[0]))


def same_on_every_worker(number):
    """Whether every worker holds the same int32 `number` (`True` outside a multi-worker strategy)."""
    if _multi_worker_strategy() is None:
        return True
    import tensorflow as tf

    (numbers,) = _all_reduce([tf.constant(number, "int32")], "gather")
    return int(tf.reduce_min(numbers)) == int(tf.reduce_max(numbers))


def broadcast_json(value):
    """The chief's `value` (anything JSON can hold) on every worker; `value` itself outside multi-worker."""
    if _multi_worker_strategy() is None:
        return value
    import numpy as np
    import tensorflow as tf

    data = np.frombuffer(json.dumps(value).encode(), np.uint8).astype("int32")
    length = tf.reduce_max(_all_reduce([tf.constant(len(data), "int32")], "gather")[0])
    padded = np.zeros(int(length), "int32")
    padded[: len(data)] = data
    (received,) = _all_reduce([padded], "sum", first_replica_only=True)
    return json.loads(bytes(received.numpy().astype("uint8")).rstrip(b"\0").decode())


def broadcast_from_chief(variables):
    """Give every worker the chief's values of `variables` (model and optimizer); nothing outside multi-worker."""
    if _multi_worker_strategy() is None or not variables:
        return
    by_dtype = {}
    for variable in variables:
        by_dtype.setdefault(variable.dtype, []).append(variable)
    for group in by_dtype.values():  # a collective packs its tensors into one: one dtype each
        values = _all_reduce([variable.value for variable in group], "sum", first_replica_only=True)
        for variable, value in zip(group, values):
            variable.assign(value)


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


def shard_by_data(fit_arguments):
    """`fit` arguments whose `tf.data` inputs a multi-worker strategy splits batch by batch; else unchanged.

    `tf.data`'s automatic sharding would give each worker its own training
    files (a different number of batches per worker, and a misaligned zip
    of source and target files); instead every worker reads the same
    seeded stream and keeps its replicas' share of each global batch.
    """
    if _multi_worker_strategy() is None:
        return fit_arguments
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    arguments = dict(fit_arguments)
    for key in ("x", "validation_data"):
        if isinstance(arguments.get(key), tf.data.Dataset):
            arguments[key] = arguments[key].with_options(options)
    return arguments
