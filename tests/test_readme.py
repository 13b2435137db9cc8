"""The README is tested: its commands, flags, signatures, Python blocks, tables and printed output.

A README drifts from the code one rename at a time; these checks read it and
compare each claim that can be compared with what the code does, so the next
drift fails CI instead of a newcomer's first hour.
"""

import ast
import inspect
import io
import os
import re
import sys
from contextlib import redirect_stdout

import pytest

import keras_transformer as kt
from keras_transformer import commands

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as _file:
    README = _file.read()

# Flags of other tools that the README shows beside the project's (pip, pytest, tensorboard, XLA).
OTHER_TOOLS = {"--no-deps", "--target", "--logdir", "--xla_force_host_platform_device_count", "--quiet", "--upgrade",
               "--local-dir", "--index-url", "--output_dir", "--quantization"}  # fmt: skip


def blocks(language):
    """The README's fenced code blocks of one language ("" for plain blocks), as (line number, text)."""
    found, lines = [], README.split("\n")
    start = None
    for number, line in enumerate(lines, 1):
        if start is None and line.startswith("```"):
            start, fence = number, line[3:].strip()
        elif start is not None and line.startswith("```"):
            if fence == language:
                found.append((start, "\n".join(lines[start:number - 1])))
            start = None
    return found


def _entry(command):
    """`main(argv)`-like callable of one command, run in-process."""
    if command == "train":
        from keras_transformer.train import parse_args
    elif command == "translate":
        from keras_transformer.translate import main as parse_args
    elif command == "attention":
        from keras_transformer.attention import parse_args
    elif command == "export":
        from export.__main__ import parse_args
    elif command == "verify":
        from export.verify import parse_args
    elif command == "import":
        from keras_transformer.pretrained.__main__ import parse_args
    else:
        from export.run_tflite import main as parse_args
    return parse_args


def help_text(command):
    output = io.StringIO()
    with redirect_stdout(output), pytest.raises(SystemExit) as exit:
        _entry(command)(["--help"])
    assert exit.value.code == 0
    return output.getvalue()


@pytest.fixture(scope="module")
def flags():
    """`{command: set of its option strings}`, read from each command's `--help`."""
    return {command: set(re.findall(r"--[a-z0-9][a-z0-9-]*", help_text(command))) for command in commands.CHECKOUT}


# How the README invokes each command: checkout and installed forms.
INVOCATIONS = [
    ("verify", r"(?:-m export\.verify|kt-verify)\b"),
    ("run_tflite", r"(?:-m export\.run_tflite|kt-run-tflite)\b"),
    ("export", r"(?:-m export|kt-export)(?![.\w])"),
    ("translate", r"(?:-m keras_transformer\.translate|kt-translate)\b"),
    ("attention", r"(?:-m keras_transformer\.attention|kt-attention)\b"),
    ("train", r"(?:\btrain\.py|kt-train)\b"),
    ("import", r"(?:-m keras_transformer\.pretrained|kt-import)\b"),
]


def readme_commands():
    """Each command line of the README's shell blocks as `(command, flags, line)`; continuation lines joined."""
    found = []
    for number, text in blocks("bash") + blocks(""):
        for line in text.replace("\\\n", " ").split("\n"):
            for piece in re.split(r"[|;&]|\$\(", line.split(" #")[0]):
                for command, pattern in INVOCATIONS:
                    match = re.search(pattern, piece)
                    if match:
                        found.append((command, re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9-]*", piece[match.end():]), number))
                        break
    return found


def test_every_command_in_the_readme_uses_flags_its_command_has(flags):
    found = readme_commands()
    assert {command for command, _, _ in found} == set(commands.CHECKOUT)  # every command is shown at least once
    wrong = [(command, flag, line) for command, used, line in found for flag in used if flag not in flags[command]]
    assert not wrong, f"README commands use flags their command does not have: {wrong}"


def test_every_flag_the_readme_names_belongs_to_a_command(flags):
    known = set().union(*flags.values()) | OTHER_TOOLS
    named = set(re.findall(r"(?<![\w-])--[a-z0-9][a-z0-9_-]*", README))
    assert sorted(named - known) == []


def test_help_shows_every_default_including_zero():
    text = help_text("train")
    assert re.search(r"--seed SEED\s+random seed \(weights, shuffling, data\) \(default: 0\)", text)
    for command in commands.CHECKOUT:
        assert "(default: " in help_text(command), command


def _library_object(dotted):
    """The object `kt.a.b` / `keras_transformer.a.b` / a name exported by `kt` names, or None."""
    parts = dotted.split(".")
    if parts[0] in ("kt", "keras_transformer"):
        parts = parts[1:]
    target = kt
    for part in parts:
        try:
            target = getattr(target, part)
        except AttributeError:
            return None
    return None if target is kt else target


def _parameters(target):
    signature = inspect.signature(target.__init__ if inspect.isclass(target) else target)
    parameters = [p for p in signature.parameters.values()
                  if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]  # fmt: skip
    if inspect.isclass(target) and issubclass(target, kt.models.base.ArchitectureModel):
        from keras_transformer.models.common import ARCHITECTURE

        # The architecture arguments every model takes through **kwargs (`ArchitectureModel`).
        parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
                       for name, default in ARCHITECTURE.items()]  # fmt: skip
    return parameters


def test_signatures_written_in_the_readme_match_the_code():
    """A span such as `Translator(model, ..., beam_size=4)` whose defaults are all the code's: same names, same order."""
    checked = 0
    for name, arguments in re.findall(r"`((?:kt\.)?[A-Za-z_][\w.]*)\(([^`()]*)\)`", README):
        target = _library_object(name)
        if target is None or not callable(target):
            continue
        items = [item.strip() for item in arguments.split(",") if item.strip() and item.strip() != "..."]
        if not all(re.fullmatch(r"[A-Za-z_]\w*(=.+)?", item) for item in items):
            continue
        parameters = {p.name: p for p in _parameters(target)}
        keywords = [item.split("=", 1) for item in items if "=" in item]
        try:
            claimed = {key: ast.literal_eval(value) for key, value in keywords}
        except (ValueError, SyntaxError):
            continue  # a call with variables, not a signature
        unknown = [key for key in claimed if key not in parameters]
        assert not unknown, f"`{name}(...)` in the README names parameters the code lacks: {unknown}"
        if any(parameters[key].default != value for key, value in claimed.items()):
            continue  # a call with other values than the defaults
        order = [p for p in parameters if p in claimed]
        assert list(claimed) == order, f"`{name}(...)`: the README's order {list(claimed)}, the code's {order}"
        checked += 1
    assert checked >= 2  # Translator(...) and kt.callbacks.Cooldown(...) at least


class _Placeholder:
    """Any value a README block leaves to the reader (`src`, `labels`, ...)."""


def _python_blocks():
    return blocks("python")


@pytest.mark.parametrize("number, text", _python_blocks(), ids=[f"line{n}" for n, _ in _python_blocks()])
def test_python_blocks_compile_and_call_the_library_as_it_is(number, text):
    """Every name a block takes from the library exists, and every call to it binds to its signature."""
    tree = ast.parse(text)
    # variable -> the library class it holds (`model = kt.Transformer(...)`); the README's usual names otherwise
    types = {"model": kt.Transformer, "translator": kt.Translator}
    imported = {}  # names a block imports from the library
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("keras_transformer"):
            module = __import__(node.module, fromlist=["_"])
            for alias in node.names:
                assert hasattr(module, alias.name), f"line {number}: {node.module} has no {alias.name}"
                imported[alias.asname or alias.name] = getattr(module, alias.name)
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and len(node.targets) == 1:
            made = _call_target(node.value, types, imported)
            if inspect.isclass(made) or (made is not None and getattr(made, "__name__", "") in ("from_preset", "from_run")):
                cls = made if inspect.isclass(made) else made.__self__
                if isinstance(node.targets[0], ast.Name):
                    types[node.targets[0].id] = cls
    calls = 0
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        target = _call_target(node, types, imported)
        if target is None:
            dotted = _dotted(node.func)
            assert not (dotted and dotted.split(".")[0] == "kt"), f"line {number}: {dotted} does not exist"
            continue
        arguments = [_Placeholder()] * len(node.args)
        keywords = {k.arg: _Placeholder() for k in node.keywords if k.arg}
        if inspect.isclass(target) and _dotted(node.func).split(".")[0] in types:
            target = target.call  # calling a layer or model instance runs its `call`
            arguments.insert(0, _Placeholder())
        elif getattr(target, "__qualname__", "").count(".") and inspect.isfunction(target) and _is_method(node, types):
            arguments.insert(0, _Placeholder())  # `instance.method(...)`: the instance is `self`
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            continue
        try:
            signature.bind(*arguments, **keywords)
        except TypeError as error:
            raise AssertionError(f"line {number}: {ast.unparse(node)}: {error}") from None
        calls += 1
    if "kt." in text or imported:
        assert calls, f"line {number}: no call to the library was checked"


def _is_method(call, types):
    """`call` is `instance.method(...)` on a variable of a library class (not `kt.Class.method`)."""
    dotted = _dotted(call.func)
    head, *rest = dotted.split(".")
    if head not in types or not rest:
        return False
    return isinstance(inspect.getattr_static(types[head], rest[0], None), type(lambda: None))


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    return None


def _call_target(call, types, imported):
    """The library callable that `call` calls, when the block makes it clear; else None."""
    dotted = _dotted(call.func)
    if dotted is None:
        return None
    head, *rest = dotted.split(".")
    if head in imported and not rest and callable(imported[head]):
        return imported[head]
    if head in types:
        target = types[head]
        for part in rest:
            target = getattr(target, part, None)
            if target is None:
                raise AssertionError(f"{types[head].__name__} has no {'.'.join(rest)}")
        return target
    if head in ("kt", "keras_transformer"):
        target = _library_object(dotted)
        if target is None:
            return None
        return target
    return None


def test_the_verify_table_in_the_readme_has_the_commands_columns():
    from export.verify import format_table
    from export.verify_families import COLUMNS

    translation = format_table([{}]).split("\n")[0]
    columns = [cell.strip() for cell in translation.strip("|").split("|")]
    family = [name for name, _ in COLUMNS]
    tables = [line for line in README.split("\n") if line.startswith("| artifact |")]
    assert tables
    for header in tables:
        assert [cell.strip() for cell in header.strip("|").split("|")] in (columns, family), header


def _printed_block():
    """The README's block of what `python train.py --verbose 2` printed."""
    for number, text in blocks(""):
        if "\nTask: " in "\n" + text and "Training time:" in text:
            return text
    raise AssertionError("the README shows no output of train.py")


def _shape(line):
    """A line with its numbers, paths and times made generic."""
    line = re.sub(r"(runs|/)\S*/[\w.-]+(/model\.keras)?", "PATH", line)
    line = re.sub(r"\d[\d,.]*(e[+-]\d+)?", "N", line)
    return re.sub(r"N(us|ms|s)/step", "N/step", line)


def _kinds(lines):
    """The distinct shapes of `lines`, in order of first appearance (the README elides repeated epochs)."""
    shapes = []
    for line in lines:
        if _shape(line) not in shapes:
            shapes.append(_shape(line))
    return shapes


def test_train_py_prints_what_the_readme_shows(tmp_path, capsys):
    """The built-in task as `python train.py --verbose 2` runs it (fewer sentences and epochs, no export): the same lines."""
    import train

    train.main(["--verbose", "2", "--epochs", "2", "--train-examples", "256", "--val-examples", "64", "--no-export",
                "--out", str(tmp_path), "--name", "run"])  # fmt: skip
    printed = [line for line in capsys.readouterr().out.split("\n") if line.strip()]
    shown = [line for line in _printed_block().split("\n") if line.strip() and line.strip() != "..."]
    # The default preset's architecture and parameter count do not depend on the data's size.
    assert [line for line in printed if line.startswith("Model: ")] == [line for line in shown if line.startswith("Model: ")]
    # The same kinds of line in the same order (the export's lines are shown too; this run does not export).
    assert _kinds(printed) == _kinds(line for line in shown if not line.startswith("export ")), "\n".join(printed)
    assert any(line.startswith("export ") for line in shown)


def test_the_readmes_set_up_and_test_commands_are_what_ci_runs():
    """Set-up is two commands (install and train; the quick tests); CI runs that test command and the slow group."""
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as file:
        ci = [line.strip() for line in file if not line.lstrip().startswith("#")]
    first = blocks("bash")[0][1]
    commands_shown = [line for line in first.split("\n") if line.strip() and not line.startswith("#")]
    assert len(commands_shown) == 2, first
    assert re.search(r"pip install -r requirements\.txt", commands_shown[0]) and "python train.py" in commands_shown[0]
    assert commands_shown[1] == ".venv/bin/python -m pytest"  # the quick suite: pyproject's addopts skip `slow`
    slow = [line for _, text in blocks("bash") for line in text.split("\n") if re.match(r"\.venv/bin/python -m pytest -m slow", line)]
    assert slow, "the README gives no command for the slow group"
    for command in ("python -m pytest", slow[0].split("#")[0].replace(".venv/bin/", "").strip()):
        assert command in ci, command
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as file:
        assert "-m 'not slow'" in file.read()


def test_the_python_api_block_runs_on_a_trained_run(trained_run):
    """The "strings in, strings out" block, on the tests' trained run instead of the Multi30k one."""
    number, text = next((n, text) for n, text in _python_blocks() if "Translator.from_run" in text)
    namespace = {}
    exec(compile(text.replace('"runs/multi30k-en-de-small"', repr(str(trained_run))), f"README.md:{number}", "exec"), namespace)
    translator = namespace["translator"]
    assert isinstance(translator.translate(["Two big dogs run."])[0], str)
    assert len(translator.translate(["Two big dogs run."], n_best=4)[0]) == 4
    assert sys.modules["keras_transformer"] is kt
