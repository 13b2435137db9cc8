"""A training run's directory: every file name in it, its checks, atomic writes.

Layout of `runs/<name>/` (each name is an attribute of `RunDirectory`):
    config.json      model config, training options, task description, Keras backend
    model.keras      the trained model (best epoch by the task's monitored score)
    history.csv      per-epoch metrics, one row per epoch, rewritten as each epoch ends
    evaluation.json  final evaluation
    tokenizers/      the source and target tokenizers (one for encoder-only and LM runs)
    hypotheses.txt   (text translation runs) the best model's validation translations
    calibration.txt  source sentences for int8 calibration, written when training ends
    checkpoints/     the latest epoch's snapshot for resuming (`run_checkpoint.RunCheckpoint`)
    epoch_weights/   (`average_last=N`) the last N epochs' weights, averaged at the end
    export/          what `python -m export` writes

Every file is written to a temporary name in the same directory and renamed
into place (`atomic_path`), so an interrupted write never leaves a
half-written file where a good one was. `RunDirectory.load` is the one check
of a finished run that training (`init_from`), translation and export use.
"""

import contextlib
import dataclasses
import errno
import json
import os
import re
import shutil
import socket
import tempfile
import time
import zipfile

import keras

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.json"
TOKENIZER_DIR = "tokenizers"


class RunDirectoryError(ValueError):
    """A run directory that is missing, incomplete, corrupt or mismatched."""


def _host():
    """This machine's name as it may appear in a file name."""
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname())[:40] or "host"


def temporary_prefix():
    """The prefix of this process's temporaries: `.tmp-kt-<host>-<pid>-`, so they say whose they are."""
    return f".tmp-kt-{_host()}-{os.getpid()}-"


_OWNED = re.compile(r"\.tmp-kt-(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-")


def _process_gone(host, pid):
    """Whether process `pid` of machine `host` is known to have ended (only this machine's can be known)."""
    if host != _host() or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, under another user
        return False
    return False


def _owner_is_gone(name):
    """Whether `name` is a temporary of this project whose process, on this machine, has ended."""
    match = _OWNED.match(name)
    return match is not None and _process_gone(match["host"], int(match["pid"]))


class RunLockedError(OSError):
    """Another live process is writing the run directory."""


class RunLock:
    """`<out>/.kt-lock-<name>` while a process writes the run `<out>/<name>`.

    It holds the writer's host and pid. A second process is refused with one
    line naming the holder; a lock left by a process that has ended on this
    machine (`kill -9`) is taken over; the holder itself may take it again.

    Args:
        path: the directory being written.
        lock_file: where the lock lives (default: `.kt-lock-<name>` beside
            `path`; an export locks `<out>/.kt-lock` inside its target).
        alternative: what the refusal suggests besides waiting.
    """

    STALE_EMPTY_SECONDS = 10  # a lock file still empty this long after it was made is a writer killed at once

    def __init__(self, path, lock_file=None, alternative="choose another `name`"):
        path = os.path.abspath(path)
        self.run = path
        self.path = lock_file or os.path.join(os.path.dirname(path), f".kt-lock-{os.path.basename(path)}")
        self.alternative = alternative
        self.me = f"{_host()} {os.getpid()}"
        self.held = False

    def _holder(self):
        try:
            with open(self.path, encoding="utf-8") as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def acquire(self):
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder == self.me:
                    self.held = True
                    return self
                if holder is None:
                    continue  # released meanwhile
                host, _, pid = holder.partition(" ")
                if holder == "":
                    with contextlib.suppress(FileNotFoundError):
                        if time.time() - os.path.getmtime(self.path) < self.STALE_EMPTY_SECONDS:
                            raise RunLockedError(f"{self.run} is being opened by another process; try again.")
                elif not (pid.isdigit() and _process_gone(host, int(pid))):
                    raise RunLockedError(
                        f"{self.run} is being written by process {pid} on {host} ({self.path}); wait for it to "
                        f"end, or {self.alternative}."
                    )
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path)  # its writer has ended
                continue
            with os.fdopen(descriptor, "w", encoding="utf-8") as f:
                f.write(self.me)
            self.held = True
            return self
        raise RunLockedError(f"{self.run}: its lock {self.path} keeps changing hands; try again.")

    def release(self):
        if self.held and self._holder() == self.me:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.path)
        self.held = False


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success, rename it to `path`.

    Works for a file or a directory written at the yielded path. On failure
    the temporary is removed and whatever was at `path` is left untouched.
    The temporary lives in a hidden `.tmp-kt-<host>-<pid>-*` folder in
    `path`'s directory (created if missing), so the rename never crosses
    file systems, it keeps `path`'s name (and suffix, which some writers
    read), and only its owner, or a later process once the owner is gone,
    removes it (`remove_temporaries`).
    """
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    folder = tempfile.mkdtemp(dir=parent, prefix=temporary_prefix())
    target = os.path.join(folder, os.path.basename(path))
    try:
        yield target
        if os.path.isdir(path) and not os.path.islink(path):
            old = os.path.join(folder, ".old")
            os.replace(path, old)
            os.replace(target, path)
        else:
            os.replace(target, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def atomic_write(path, write):
    """Call `write(tmp)` with a temporary path, then rename the result to `path`."""
    with atomic_path(path) as tmp:
        write(tmp)


def remove_temporaries(directory):
    """Remove the leftovers of this project's writes that a kill interrupted (in `directory`, not below).

    Only temporaries named by `atomic_path` (`.tmp-kt-<host>-<pid>-*`) whose
    process on this machine has ended: a user's own `.tmp-notes.txt`, and a
    temporary another live process is writing, are never touched.
    """
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if _owner_is_gone(name):
                path = os.path.join(directory, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(path)


def is_disk_full(error):
    """Whether `error` says the file system is full (or the user's quota spent)."""
    if getattr(error, "disk_full", False) or isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text  # TensorFlow's own file errors


def disk_full_message(path, then):
    """One line for a write into `path` that found its file system full; `then` says how to go on."""
    try:
        free = shutil.disk_usage(path if os.path.exists(path) else os.path.dirname(os.path.abspath(path))).free
        free = f"{free / 1e6:.1f} MB free"
    except OSError:
        free = "free space unknown"
    return f"no space left on the device holding {path} ({free}); nothing half-written was kept. Free some space, {then}."


def check_writable(directory, message="cannot write into {directory}"):
    """Create `directory` if needed and write a probe file in it, or raise one `OSError` saying why.

    `message` is formatted with `directory`; the system's reason follows it.
    """
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as error:
        reason = error.strerror or str(error)
        raise OSError(f"{message.format(directory=directory)}: {reason}.") from None


def write_text(path, text):
    """Write `text` (UTF-8) to `path` atomically."""

    def write(tmp):
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    atomic_write(path, write)


def write_json(path, data):
    """Write `data` as indented JSON to `path` atomically."""
    write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def read_json(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} is missing: not a run directory, or an incomplete one.") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunDirectoryError(f"{path} is corrupt (not valid JSON: {error}).") from None


def save_model(path, model):
    atomic_write(path, model.save)


@dataclasses.dataclass
class LoadedRun:
    """A finished run, checked: what `RunDirectory.load` returns."""

    path: str
    config: dict
    model: keras.Model
    source_tokenizer: object
    target_tokenizer: object

    @property
    def family(self):
        """The run's task family: "translate", "classify", "tag", "lm" or "pretrain-mlm"."""
        return self.config.get("task", {}).get("family", "translate")

    @property
    def labels(self):
        """Class or tag names (classify, tag runs), else `None`."""
        return self.config.get("task", {}).get("labels")

    @property
    def max_sequence_length(self):
        return getattr(self.model, "backbone", self.model).max_sequence_length


class RunDirectory:
    """The directory of one run, and the one owner of its file names.

    Args:
        path: `runs/<name>`.
        create: make the directory; refuses one that already holds a run
            unless `exist_ok` (resuming).

    Attributes:
        created: whether this object made the directory (it did not exist):
            a run that fails before its first epoch removes only such a one.
    """

    config_file = CONFIG_FILE
    model_file = MODEL_FILE
    history_file = "history.csv"
    evaluation_file = "evaluation.json"
    hypotheses_file = "hypotheses.txt"
    calibration_file = "calibration.txt"
    tokenizer_dir = TOKENIZER_DIR
    checkpoint_dir_name = "checkpoints"
    epoch_weights_dir_name = "epoch_weights"
    export_dir_name = "export"
    tensorboard_dir = "tensorboard"

    def __init__(self, path, create=False, exist_ok=False):
        self.path = str(path)
        self.created = create and not os.path.isdir(self.path)  # made by this object, not found
        if create:
            if os.path.exists(self.file(CONFIG_FILE)) and not exist_ok:
                raise FileExistsError(
                    f"{self.path} already holds a run; resume it (`resume`) or choose another name."
                )
            os.makedirs(self.path, exist_ok=True)
        elif not os.path.isdir(self.path):
            raise FileNotFoundError(f"Run directory {self.path} does not exist.")

    def file(self, name):
        return os.path.join(self.path, name)

    @property
    def checkpoint_dir(self):
        return self.file(self.checkpoint_dir_name)

    @property
    def epoch_weights_dir(self):
        return self.file(self.epoch_weights_dir_name)

    @property
    def export_dir(self):
        return self.file(self.export_dir_name)

    def write_json(self, name, data):
        write_json(self.file(name), data)

    def write_text(self, name, text):
        write_text(self.file(name), text)

    def read_json(self, name):
        return read_json(self.file(name))

    def save_model(self, model, name=MODEL_FILE):
        save_model(self.file(name), model)

    def load_model(self, name=MODEL_FILE, compile=True):
        import keras_transformer  # noqa: F401  (registers the classes)

        path = self.file(name)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing: the run has no saved model.")
        if not zipfile.is_zipfile(path):  # Keras reports a damaged archive as "File not found"
            raise RunDirectoryError(f"{path} is not a .keras archive (truncated or corrupt?): the run's model is lost.")
        try:
            return keras.saving.load_model(path, compile=compile)
        except Exception as error:
            raise RunDirectoryError(f"{path} could not be loaded as a keras-transformer model: {error}") from error

    # Tokenizers (TensorFlow: imported only when used).

    def has_tokenizers(self):
        from keras_transformer.data.tokenizers import METADATA_FILE

        return os.path.exists(os.path.join(self.file(TOKENIZER_DIR), METADATA_FILE))

    def save_tokenizers(self, source, target=None):
        """Save the run's tokenizers atomically (`target` defaults to `source`: one vocabulary)."""
        from keras_transformer.data.tokenizers import save_tokenizers

        with atomic_path(self.file(TOKENIZER_DIR)) as tmp:
            save_tokenizers(tmp, source, source if target is None else target)

    def load_tokenizers(self):
        """`(source, target)` tokenizers of the run."""
        from keras_transformer.data.tokenizers import load_tokenizers

        return load_tokenizers(self.file(TOKENIZER_DIR))

    # Calibration sentences for int8 export.

    def write_calibration(self, sentences):
        lines = [" ".join(sentence.split()) for sentence in sentences]
        self.write_text(self.calibration_file, "".join(line + "\n" for line in lines if line))

    def read_calibration(self):
        """The sentences `write_calibration` saved, or `None` when the run has none."""
        path = self.file(self.calibration_file)
        if not os.path.exists(path):
            return None
        try:
            with open(path, encoding="utf-8") as f:
                return [line for line in f.read().split("\n") if line]
        except UnicodeDecodeError as error:
            raise RunDirectoryError(
                f"{path} is corrupt (not UTF-8 text: {error.reason} at byte {error.start}); write one source "
                "sentence per line there, or give the sentences another way (--data FILE)."
            ) from None

    def load(self, tokenizers=True):
        """The finished run, checked: a `LoadedRun`.

        Raises:
            RunDirectoryError: a file is missing or corrupt, or the config,
                model and tokenizers do not describe one another (a
                mismatched directory); the message names the file.
        """
        from keras_transformer.data.tokenizers import METADATA_FILE

        required = [CONFIG_FILE, MODEL_FILE] + ([os.path.join(TOKENIZER_DIR, METADATA_FILE)] if tokenizers else [])
        for name in required:
            if not os.path.exists(self.file(name)):
                raise RunDirectoryError(f"{self.path} is incomplete: {name} is missing (was training interrupted?).")
        try:
            config = self.read_json(CONFIG_FILE)
            model = self.load_model(compile=False)
            source, target = self.load_tokenizers() if tokenizers else (None, None)
        except (OSError, ValueError) as error:
            raise RunDirectoryError(f"{self.path}: {error}") from None
        run = LoadedRun(self.path, config, model, source, target)
        _check_model_matches(run)
        return run


def _check_model_matches(run):
    """The config, model and tokenizers of `run` describe one model."""
    model, config = run.model, run.config.get("model", {})
    if _find(config, "max_sequence_length") != run.max_sequence_length:
        raise RunDirectoryError(f"{run.path}: {CONFIG_FILE} does not describe {MODEL_FILE} (max_sequence_length differs).")
    if run.source_tokenizer is None:
        return
    tokenizer_sizes = (run.source_tokenizer.vocabulary_size, run.target_tokenizer.vocabulary_size)
    if hasattr(model, "source_vocabulary_size"):  # encoder-decoder
        sizes = (model.source_vocabulary_size, model.target_vocabulary_size)
        if sizes != tokenizer_sizes:
            raise RunDirectoryError(
                f"{run.path}: the tokenizers do not match the model (vocabularies {tokenizer_sizes[0]} / "
                f"{tokenizer_sizes[1]}, the model's {sizes[0]} / {sizes[1]}): a mismatched run directory."
            )
        return
    # A pre-trained encoder's vocabulary has one more id than its tokenizer: the mask token.
    size = getattr(model, "backbone", model).vocabulary_size
    if size not in (tokenizer_sizes[0], tokenizer_sizes[0] + 1):
        raise RunDirectoryError(
            f"{run.path}: the tokenizer ({tokenizer_sizes[0]} ids) does not match the model ({size}): "
            "a mismatched run directory."
        )
    if run.family in ("classify", "tag"):
        count = model.num_classes if run.family == "classify" else model.num_tags
        if not run.labels or len(run.labels) != count:
            raise RunDirectoryError(f"{run.path}: {CONFIG_FILE} does not list the model's {count} labels.")


def _find(config, key):
    """The first value of `key` in nested dicts (a task model's config holds its backbone's)."""
    if isinstance(config, dict):
        if key in config:
            return config[key]
        for value in config.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None
