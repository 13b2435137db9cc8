"""Keep TensorFlow's and LiteRT's start-up chatter off the user's screen.

TensorFlow 2.21, XLA and LiteRT write from C++ straight to file descriptor 2,
and some of it looks like failure on a healthy machine: absl's "All log
messages before absl::InitializeLog() is called are written to STDERR",
oneDNN's and CUDA's start-up notes, `E0000 ... failed call to cuInit` on a
machine without a GPU, `E0000 ... NodeDef mentions attribute Truncate` while a
TFLite converter runs, `INFO: Created TensorFlow Lite XNNPACK delegate`.
`TF_CPP_MIN_LOG_LEVEL` cannot hide the lines absl prints before its logging is
initialised, so this module filters the descriptor itself:

- `native_stderr_filtered()`: a bounded section (importing Keras with the
  TensorFlow backend, which `import keras_transformer` does) writes fd 2 into a
  temporary file; at its end every line that is not known chatter is written
  to stderr.
- `filter_process_stderr()`: the project's commands call it first thing; from
  then on fd 2 is a pipe read by a small filter process, which forwards every
  line but the known chatter (a crash's last words included, since the filter
  outlives the process that writes to it). Python's own `sys.stderr` keeps
  writing to the terminal directly.

Only lines in `CHATTER` are dropped: INFO lines of TensorFlow's C++ logging, and
warnings and errors that are known to be harmless here, each with its reason.
Everything else, real warnings and errors included, is shown.

`KT_NATIVE_LOGS=1` in the environment turns all of this off (nothing
filtered, `TF_CPP_MIN_LOG_LEVEL` left as it is), for debugging TensorFlow
itself.

This module imports nothing heavy: it must run before TensorFlow loads.
"""

import atexit
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile

ENVIRONMENT_VARIABLE = "KT_NATIVE_LOGS"

# An absl log line: severity letter, date, time, thread id, source file:line].
_ABSL = r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ "

# (pattern, why the line is harmless). Patterns match the whole line, as bytes.
CHATTER = [
    (r"WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR",
     "absl announces that it was not initialised; the lines it then prints are below"),
    (r"I\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] .*",
     "INFO from TensorFlow's and XLA's C++ logging (oneDNN on, no CUDA driver, CPU features, ...)"),
    (r"To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.",
     "the second line of cpu_feature_guard's INFO: a note for people who build TensorFlow"),
    (_ABSL + r"cuda_(platform|diagnostics|executor)\.cc:\d+\] .*(cuInit|CUDA|kernel driver|cuda).*",
     "no NVIDIA driver on this machine; the project prints which device it trains on"),
    (_ABSL + r"\S+:\d+\] oneDNN supports DT_\w+ only on platforms with AVX-512.*",
     "oneDNN falls back to TensorFlow's own kernel for that op; results are unchanged"),
    (_ABSL + r"node_def_util\.cc:\d+\] NodeDef mentions attribute \w+ which is not in the op definition.*",
     "the TFLite converter reads graphs written by a newer op registry; the attribute is unused"),
    (r"INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.",
     "LiteRT's CPU kernels are in use, as they should be"),
    (_ABSL + r"\S+:\d+\] Local rendezvous is aborting with status: .*",
     "follows an error that the project reports in its own words"),
    (_ABSL + r"\S+:\d+\] (TF-TRT Warning: Could not find TensorRT|Unable to register cu(DNN|FFT|BLAS) factory).*",
     "GPU libraries that a CPU machine does not have"),
]

_PATTERN = re.compile(b"|".join(b"(?:" + p.encode() + b")" for p, _ in CHATTER))


def enabled():
    """False when the user asked to see every native log line (`KT_NATIVE_LOGS=1`)."""
    return os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() in ("", "0", "false", "no")


def is_chatter(line):
    """Whether one line (str or bytes, with or without its newline) is known chatter."""
    if isinstance(line, str):
        line = line.encode("utf-8", "replace")
    return _PATTERN.fullmatch(line.rstrip(b"\r\n")) is not None


def configure_environment():
    """TensorFlow's own C++ log level to warnings and errors, unless the user set it or asked for everything."""
    if enabled():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _forward(data, write):
    for line in data.splitlines(keepends=True):
        if not is_chatter(line):
            write(line)


@contextlib.contextmanager
def native_stderr_filtered():
    """Within the block, lines written to fd 2 are held and shown at its end, chatter left out."""
    if not enabled() or _filter_process is not None:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(Exception):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            held = capture.read()
            if held:
                with contextlib.suppress(OSError):
                    _forward(held, lambda line: os.write(2, line))


# The filter process: reads its stdin line by line, writes what is not chatter to its stderr.
_FILTER = """
import json, re, sys
pattern = re.compile(json.loads(sys.argv[1]).encode())
out = sys.stderr.buffer
for line in iter(sys.stdin.buffer.readline, b""):
    if pattern.fullmatch(line.rstrip(b"\\r\\n")) is None:
        out.write(line)
        out.flush()
"""

_filter_process = None


def filter_process_stderr():
    """Route this process's fd 2 through a filter process that drops known chatter (commands call this first).

    Python's `sys.stderr` is pointed at the original stderr, so the project's own
    messages and tracebacks are written directly; native code (TensorFlow,
    LiteRT) and child processes write into the filter. Idempotent; does nothing
    under `KT_NATIVE_LOGS=1` or where fd 2 cannot be redirected.
    """
    global _filter_process
    configure_environment()
    if not enabled() or _filter_process is not None:
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        read_end, write_end = os.pipe()
        process = subprocess.Popen(
            [sys.executable, "-S", "-c", _FILTER, json.dumps(_PATTERN.pattern.decode())],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=original,
            close_fds=True,
        )
    except (OSError, AttributeError, ValueError):
        return
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    stream = open(original, "w", encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                  errors="backslashreplace", buffering=1, closefd=True)  # fmt: skip
    sys.stderr = stream
    _filter_process = process
    atexit.register(_close_filter, original)


def _close_filter(original):
    """At exit: close this process's end of the pipe and let the filter write its last lines."""
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.dup2(original, 2)  # the pipe's last writer in this process closes here
    with contextlib.suppress(Exception):
        _filter_process.wait(timeout=5)
