"""The house rules of the package layout, read from the source: no import cycle, no CLI inside."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("keras_transformer", "export")


def _modules():
    """`{dotted name: path}` of every module of the library and of `export/`."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path, name, modules):
    """The project modules `path` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            for alias in node.names:
                # `from package import module` imports the module.
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {module for module in found if module in modules}


def _graph():
    modules = _modules()
    # A package's __init__ only gathers its modules for users: edges into it are not followed.
    packages = {name for name, path in modules.items() if path.name == "__init__.py"}
    return {
        name: _imports(path, name, modules) - packages
        for name, path in modules.items()
        if name not in packages
    }


def _cycles(graph):
    """Every strongly connected set of more than one module (Tarjan)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                result.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return result


def test_no_import_cycle_in_the_library_or_export():
    graph = _graph()
    assert "export.base" in graph and "keras_transformer.tasks.trainer" in graph
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_special_ids_come_from_vocabulary_and_export_uses_public_model_methods():
    graph = _graph()
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "keras_transformer.layers.masks":
                assert not [alias.name for alias in node.names if alias.name.endswith("_ID")], name
            if isinstance(node, ast.Attribute) and name.startswith("export"):
                assert node.attr not in ("transformer_layers", "_weights", "_check_token_ids"), name
    # The decoder's cache helpers are not imported by export: the model provides its cache shapes.
    assert not any("keras_transformer.models.transformer_decoder" in graph[name] for name in graph if name.startswith("export"))


# `python -m` commands of the library, and `commands` (their shared help formatter and names)
COMMANDS = {"keras_transformer.translate", "keras_transformer.attention", "keras_transformer.train", "keras_transformer.commands",
            "keras_transformer.pretrained.__main__"}


def test_no_library_module_reads_command_line_arguments():
    for name, path in _modules().items():
        tree = ast.parse(path.read_text())
        if name.startswith("keras_transformer") and name not in COMMANDS:
            assert "argparse" not in path.read_text(), name
            reads = [node for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                     and isinstance(node.value, ast.Name) and node.value.id == "args"]  # fmt: skip
            assert not reads, name


def test_the_distribution_lists_every_package_and_installs_no_generic_name():
    import tomllib

    with open(ROOT / "pyproject.toml", "rb") as f:
        setuptools = tomllib.load(f)["tool"]["setuptools"]
    packages = {".".join(path.parent.relative_to(ROOT).parts) for path in (ROOT / "keras_transformer").rglob("__init__.py")}
    assert set(setuptools["packages"]) == packages | {"keras_transformer.export"}
    assert setuptools["package-dir"] == {"keras_transformer.export": "export"}
    assert all(name.startswith("keras_transformer") for name in setuptools["packages"])


@pytest.mark.slow
def test_installed_commands_run_from_another_directory(tmp_path):
    import os
    import subprocess
    import sys

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(ROOT)], check=True, capture_output=True, timeout=600)  # fmt: skip
    assert sorted(os.listdir(target / "keras_transformer" / "export"))[:2] == ["__init__.py", "__main__.py"]
    assert not (target / "export").exists() and not (target / "train.py").exists()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key not in ("TF_CPP_MIN_LOG_LEVEL", "KT_NATIVE_LOGS")}
    env["PYTHONPATH"] = str(target)
    for command in ("kt-train", "kt-translate", "kt-attention", "kt-export", "kt-verify", "kt-run-tflite", "kt-import"):
        done = subprocess.run([str(target / "bin" / command), "--help"], cwd=elsewhere, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        # Quiet, and named as installed: `python -m export` does not exist outside a checkout.
        assert done.returncode == 0 and done.stderr == "", (command, done.stderr[-2000:])
        assert done.stdout.startswith(f"usage: {command} ") and "python -m" not in done.stdout, (command, done.stdout)
    probe = "import keras_transformer.export as e, importlib.util as u; print(e.__file__, u.find_spec('export'))"
    done = subprocess.run([sys.executable, "-c", probe], cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.stdout.split() == [str(target / "keras_transformer" / "export" / "__init__.py"), "None"], done.stderr
