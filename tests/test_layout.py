"""Who imports whom: model/ is a leaf, the library imports no script, scripts import no script,
and the library's packages import one another in one direction only."""

import ast
import pathlib

REPOSITORY = pathlib.Path(__file__).resolve().parent.parent
LIBRARY_PACKAGES = ("model", "utils")
# The library's packages, lowest first: each may import the ones before it, never one after it.
LAYERS = ("config", "model", "utils.errors", "utils.files", "utils.scripts", "utils.runtime", "utils.provenance",
          "utils.results", "utils.plots", "utils.data", "utils.evaluation", "utils.training", "utils.selection", "utils.cli")


def module_name(path):
    parts = list(path.relative_to(REPOSITORY).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules():
    """{module name: path} of every Python file of the project but the tests."""
    modules = {}
    for path in REPOSITORY.rglob("*.py"):
        relative = path.relative_to(REPOSITORY)
        if relative.parts[0] in ("tests", ".git") or any(part.startswith(".") for part in relative.parts):
            continue
        modules[module_name(path)] = path
    return modules


def imported(path):
    """The module names a file imports, anywhere in it (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def project_imports():
    """{module: the project modules it imports}. A bench script imports its neighbours by bare name."""
    modules = project_modules()

    def resolve(name, importer):
        if importer.startswith("bench.") and f"bench.{name}" in modules:
            return f"bench.{name}"
        return name

    return {name: {resolve(other, name) for other in imported(path) if resolve(other, name) in modules}
            for name, path in modules.items()}


def is_library(name):
    return name == "config" or name.split(".")[0] in LIBRARY_PACKAGES


def layer(name):
    """The index of a library module's layer in LAYERS; -1 for the utils package itself, which is empty."""
    return max((index for index, prefix in enumerate(LAYERS) if name == prefix or name.startswith(prefix + ".")),
               default=-1)


def test_the_model_imports_nothing_else_of_the_project():
    for name, imports in project_imports().items():
        if name.split(".")[0] == "model":
            assert all(other.split(".")[0] == "model" for other in imports), (name, imports)


def test_no_script_is_imported_by_the_library_or_by_another_script():
    # The bench's own library: what its scripts share. The rest of bench/ are scripts.
    bench_library = {"bench.machine", "bench.batches", "bench.torch_baseline", "bench.speed", "bench.op_times",
                     "bench.timed_training"}
    for name, imports in project_imports().items():
        scripts = {other for other in imports if not is_library(other) and other not in bench_library}
        assert not scripts, f"{name} imports the script(s) {sorted(scripts)}"


def test_the_library_imports_downwards_only():
    for name, imports in project_imports().items():
        if not is_library(name):
            continue
        upwards = sorted(other for other in imports if is_library(other) and layer(other) > layer(name))
        assert not upwards, f"{name} imports {upwards}, which sit above it ({' < '.join(LAYERS)})"


def test_the_library_never_reads_the_command_line():
    for name, path in project_modules().items():
        if is_library(name):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            assert not any(isinstance(node, ast.Attribute) and node.attr == "argv" and
                           isinstance(node.value, ast.Name) and node.value.id == "sys"
                           for node in ast.walk(tree)), f"{name} reads sys.argv"


def test_every_library_module_is_in_a_layer():
    for name in project_modules():
        if is_library(name) and name != "utils":
            assert layer(name) >= 0, name
