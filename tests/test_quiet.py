"""Quiet by default: TensorFlow's and LiteRT's chatter is filtered, everything else is shown.

Every command and `import keras_transformer` run in a subprocess whose stderr
is read as a user would see it; a line that looks like a failure (absl's
`E0000`/`W0000`/`F0000`, its "before absl::InitializeLog()" warning, a
Python warning) fails the test.
"""

import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUIET = os.path.join(ROOT, "keras_transformer", "quiet.py")
# What a newcomer takes for an error: absl's warning/error/fatal lines and its start-up warning, TensorFlow's
# and Python's warnings.
NOISE = re.compile(
    r"^([WEF]\d{4} |WARNING: All log messages before absl|.*(Warning|WARNING):|INFO: Created TensorFlow Lite)",
    re.MULTILINE,
)

# Lines TensorFlow 2.21 and LiteRT printed from the project's commands before they were filtered.
CHATTER = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796464253.992959    2382 port.cc:153] oneDNN custom operations are on. You may see slightly "
    "different numerical results due to floating-point round-off errors from different computation orders. "
    "To turn them off, set the environment variable `TF_ENABLE_ONEDNN_OPTS=0`.",
    "I0000 00:00:1796464253.993248    2382 cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will "
    "not be used.",
    "I0000 00:00:1796464254.029791    2382 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use "
    "available CPU instructions in performance-critical operations.",
    "To enable the following instructions: AVX2 AVX512F AVX512_VNNI FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.",
    "E0000 00:00:1796464295.266388    3191 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: Failed "
    "call to cuInit: UNKNOWN ERROR (303)",
    "E0000 00:00:1796464295.266388    3191 mkl_util.h:1234] oneDNN supports DT_INT64 only on platforms with "
    "AVX-512. Falling back to the default Eigen-based implementation if present.",
    "E0000 00:00:1796464295.266388    3191 node_def_util.cc:682] NodeDef mentions attribute Truncate which is not in "
    "the op definition: Op<name=Cast; signature=x:SrcT -> y:DstT> This may be expected if your graph generating "
    "binary is newer than this binary.",
    "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
    "W0000 00:00:1796464295.266388    3191 local_rendezvous.cc:404] Local rendezvous is aborting with status: "
    "INVALID_ARGUMENT: assertion failed",
]
REAL = [
    "E0000 00:00:1796464295.266388    3191 bfc_allocator.cc:485] Allocator ran out of memory trying to allocate 4.0GiB",
    "F0000 00:00:1796464295.266388    3191 tensor_shape.cc:44] Check failed: dims() == 2",
    "W0000 00:00:1796464295.266388    3191 op_kernel.cc:1857] OP_REQUIRES failed at strided_slice_op.cc:117",
    "Traceback (most recent call last):",
    "ValueError: `beam_size` must be a positive integer.",
    "train.py: error: --epochs must be at least 1",
    "",
]


def _quiet_module():
    """keras_transformer/quiet.py on its own (importing the package would load TensorFlow)."""
    spec = importlib.util.spec_from_file_location("quiet_alone", QUIET)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _environment(**extra):
    """This process's environment without `KT_NATIVE_LOGS` (a developer's shell may set it), plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if k != "KT_NATIVE_LOGS"}, **extra}


def _python(code, env=None, timeout=120):
    environment = _environment(**(env or {}))
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=timeout
    )


def test_chatter_is_recognised_and_real_messages_are_not():
    quiet = _quiet_module()
    for line in CHATTER:
        assert quiet.is_chatter(line), line
        assert quiet.is_chatter((line + "\n").encode())
    for line in REAL:
        assert not quiet.is_chatter(line), line
    assert len(quiet.CHATTER) == len({why for _, why in quiet.CHATTER})  # each pattern says why it is harmless


_WRITES = (
    "import os, sys\n"
    "chatter, real = {chatter!r}, {real!r}\n"
    "for line in chatter + real + chatter:\n"
    "    os.write(2, (line + '\\n').encode())\n"
)


def test_a_filtered_section_shows_every_line_but_the_chatter_at_its_end():
    code = (
        f"import importlib.util\nspec = importlib.util.spec_from_file_location('q', {QUIET!r})\n"
        "quiet = importlib.util.module_from_spec(spec); spec.loader.exec_module(quiet)\n"
        "with quiet.native_stderr_filtered():\n"
        + "".join("    " + line + "\n" for line in _WRITES.format(chatter=CHATTER, real=REAL).splitlines())
        + "    print('from Python', file=sys.stderr)\n"
        "print('after', file=sys.stderr)\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == REAL + ["from Python", "after"]
    shown = _python(code, env={"KT_NATIVE_LOGS": "1"})
    assert shown.stderr.splitlines() == CHATTER + REAL + CHATTER + ["from Python", "after"]


@pytest.mark.parametrize("ending", ["exit", "abort"])
def test_a_commands_filter_process_forwards_everything_but_the_chatter_even_a_crashs_last_words(ending):
    code = (
        f"import importlib.util\nspec = importlib.util.spec_from_file_location('q', {QUIET!r})\n"
        "quiet = importlib.util.module_from_spec(spec); spec.loader.exec_module(quiet)\n"
        "quiet.filter_process_stderr()\n"
        "quiet.filter_process_stderr()  # idempotent\n"
        + _WRITES.format(chatter=CHATTER, real=REAL)
        + "print('from Python', file=sys.stderr, flush=True)\n"
        "import subprocess; subprocess.run([sys.executable, '-c', 'import os; os.write(2, b\"I0000 00:00:1.2  7 "
        "x.cc:1] child chatter\\\\nchild says hi\\\\n\")'])\n"
        + ("os.abort()\n" if ending == "abort" else "")
    )
    result = _python(code)
    assert result.returncode == (0 if ending == "exit" else -6), result.stderr
    lines = result.stderr.splitlines()
    # Python's own stderr is written directly, native writes pass through the filter: compare as sets of lines.
    assert sorted(lines) == sorted(REAL + ["from Python", "child says hi"])


def test_importing_the_library_prints_nothing_and_the_environment_variable_shows_everything():
    quiet = _python("import keras_transformer")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    shown = _python("import keras_transformer", env={"KT_NATIVE_LOGS": "1"})
    assert shown.returncode == 0
    if not shown.stderr:
        pytest.skip("this TensorFlow prints nothing at start-up")
    assert any(_quiet_module().is_chatter(line) for line in shown.stderr.splitlines())


COMMANDS = {
    "train": [sys.executable, "train.py"],
    "translate": [sys.executable, "-m", "keras_transformer.translate"],
    "attention": [sys.executable, "-m", "keras_transformer.attention"],
    "export": [sys.executable, "-m", "export"],
    "verify": [sys.executable, "-m", "export.verify"],
    "run_tflite": [sys.executable, "-m", "export.run_tflite"],
}


def test_every_commands_help_is_quiet_and_names_the_command_as_it_was_run():
    from keras_transformer import commands

    environment = _environment()
    running = {
        name: subprocess.Popen(command + ["--help"], cwd=ROOT, env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        for name, command in COMMANDS.items()
    }  # fmt: skip
    for name, process in running.items():
        out, err = process.communicate(timeout=300)
        assert process.returncode == 0 and err == "", (name, err)
        assert out.startswith(f"usage: {os.path.basename(commands.CHECKOUT[name].split()[-1])}") or out.startswith(
            f"usage: {commands.CHECKOUT[name]}"
        ), (name, out[:80])
        assert "(default: " in out, name


def test_installed_commands_name_themselves_as_installed(monkeypatch):
    from keras_transformer import commands

    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/kt-export", "--help"])
    assert commands.name("export") == "kt-export" and commands.name("verify") == "kt-verify"
    assert commands.named("python -m export.verify --model X; python -m export --model X") == (
        "kt-verify --model X; kt-export --model X"
    )
    monkeypatch.setattr(sys, "argv", ["pytest"])
    assert commands.in_checkout()  # the tests run from a checkout: its top-level export/ is importable
    assert commands.name("export") == "python -m export"
    monkeypatch.setattr(commands, "in_checkout", lambda: False)
    assert commands.name("run_tflite") == "kt-run-tflite"  # python -m export.run_tflite exists only in a checkout


def _run_command(name, *arguments, stdin=None, timeout=600):
    environment = _environment()
    result = subprocess.run(
        COMMANDS[name] + [str(a) for a in arguments], cwd=ROOT, env=environment, input=stdin,
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    noise = NOISE.findall(result.stderr) + NOISE.findall(result.stdout)
    assert not noise, (name, result.stderr[-3000:])
    return result


@pytest.mark.slow
def test_every_command_on_a_fresh_run_prints_no_error_looking_line(tmp_path):
    """Train (and export to TFLite) a small translation run, then use it with each command: no chatter anywhere."""
    trained = _run_command(
        "train", "--num-layers", "1", "--hidden-dim", "32", "--num-heads", "2", "--intermediate-dim", "64",
        "--train-examples", "600", "--val-examples", "50", "--epochs", "1", "--max-length", "40",
        "--verbose", "2", "--export", "tflite", "--out", tmp_path, "--name", "run",
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert trained.stderr == "", trained.stderr[-3000:]
    run = tmp_path / "run"
    translated = _run_command("translate", "--model", run, "--beam-size", "2", stdin="the big dog sees a cat\n\n")
    assert translated.returncode == 0 and len(translated.stdout.split("\n")) == 3, translated.stderr
    exported = _run_command("export", "--model", run, "--format", "tflite_dynamic_int8", "--out", tmp_path / "out")
    assert exported.returncode == 0, exported.stderr
    verified = _run_command("verify", "--model", run, "--limit", "8", "--latency-sentences", "2")
    assert verified.returncode == 0 and "token_agreement" in verified.stdout, verified.stderr
    lite = _run_command("run_tflite", "--model", run, "the big dog sees a cat")
    assert lite.returncode == 0 and lite.stdout.strip(), lite.stderr
    drawn = _run_command("attention", "--model", run, "the big dog sees a cat", "--out", tmp_path / "a.png")
    assert drawn.returncode == 0 and (tmp_path / "a.png").exists(), drawn.stderr
    refused = _run_command("translate", "--model", tmp_path / "missing", stdin="x\n")
    assert refused.returncode == 2 and refused.stderr.startswith("translate: error:")
