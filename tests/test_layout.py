"""The layout module is the one place that spells an output's name, and the package's imports form no cycle."""

import ast
import re
from pathlib import Path

import pytest

from eat_asd.layout import Grid, Run, Tables, fill, plot_machine

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "src" / "eat_asd"

# names of files a run writes, as DCASE and the workflow name them (written here, independently of the layout)
OUTPUT_NAMES = ["auroc.csv", "auroc.md", "dcase_metrics", "dcase_summary", "decisions.csv", "decisions.md",
                "anomaly_score_", "decision_result_", "train_log", "summary.json", "head.safetensors",
                "model.safetensors", "modeling_eat", "config.json", "lora_adapter", "adapter_model", "adapter_config",
                ".npz", ".safetensors", "report.html", "clip-hashes", "_roc.png", "_scores.png",
                "manifests/", "embeddings/", "features/", "scores/", "plots/", "tables/", "submission/", "encoder/",
                "/runs/", "comparison.csv", "comparison.md", "comparison.png"]


def code_strings(path: Path) -> list[tuple[int, str]]:
    """The string constants of a module that are not docstrings, with their line numbers."""
    tree = ast.parse(path.read_text())
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                docstrings.add(id(first.value))
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


def workflow_code_lines() -> list[tuple[str, int, str]]:
    files = [*sorted((REPO / "workflow").rglob("*.smk")), REPO / "workflow" / "Snakefile", REPO / "Snakefile"]
    return [(f.name, i, line.split("#")[0]) for f in files for i, line in enumerate(f.read_text().splitlines(), 1)]


def test_output_file_names_are_spelled_in_the_layout_module_only():
    """Before, training outputs were named in train.py and again in five rule files, stages.py and the CLI;
    a renamed file broke only the slow end-to-end tests."""
    found = []
    for module in sorted(PACKAGE.glob("*.py")):
        if module.name == "layout.py":
            continue
        found += [f"{module.name}:{line}: {text!r}" for line, text in code_strings(module)
                  if any(name in text for name in OUTPUT_NAMES)]
    found += [f"{name}:{line}: {text.strip()}" for name, line, text in workflow_code_lines()
              if any(n in text for n in OUTPUT_NAMES)]
    # the Hub's download patterns name the weights' suffix, not a file the workflow writes
    found = [f for f in found if "'*.safetensors'" not in f]
    assert not found, "output names outside eat_asd/layout.py:\n" + "\n".join(found)


def test_the_layout_spells_what_dcase_and_the_workflow_expect():
    run = Run("res")
    assert run.features(part="train") == "res/features/{machine}.train.safetensors"  # wildcards kept for Snakemake
    assert run.submission("anomaly_score", "fan", "00") == "res/submission/anomaly_score_fan_section_00_test.csv"
    assert run.submission("decision_result", "fan", "01") == "res/submission/decision_result_fan_section_01_test.csv"
    assert run.training.encoder_weights == "res/encoder/encoder/model.safetensors"
    assert run.training.model_card == "res/encoder/encoder/README.md"
    assert run.tables.dcase == (Path("res/tables/dcase_metrics.csv"), Path("res/tables/dcase_metrics.md"))
    assert set(run.tables.outputs()) == {"auroc", "auroc_md", "dcase", "dcase_md", "means", "means_md",
                                         "decisions", "decisions_md", "summary"}
    grid = run.grid
    assert isinstance(grid, Grid) and grid.features("abc", "fan", "test") == "res/experiments/features/abc/fan.test.safetensors"
    assert grid.tables("base", 3).summary == Path("res/experiments/runs/base/seed_3/tables/summary.json")
    assert grid.training().summary == "res/experiments/train/{tkey}/summary.json"
    assert fill("{a}_{b}", b="x") == "{a}_x"
    assert plot_machine(run.plot("Toy_Car", "roc")) == "Toy_Car"


def test_every_tables_field_has_a_file():
    from dataclasses import fields

    tables = Tables.in_folder("t")
    assert {f.name for f in fields(Tables)} == {k for k in tables.outputs() if not k.endswith("_md")}


def package_imports() -> dict[str, set[str]]:
    """module -> the package modules it imports (at the top or inside functions)."""
    graph = {}
    for module in PACKAGE.glob("*.py"):
        deps = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                if node.module:
                    deps.add(node.module.split(".")[0])
                else:
                    deps.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("eat_asd."):
                deps.add(node.module.split(".")[1])
        graph[module.stem] = deps - {module.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` (as the path around it), or None."""
    state: dict[str, str] = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_the_package_import_graph_has_no_cycles():
    graph = package_imports()
    assert graph["layout"] == set()  # the bottom: everything may read it
    assert {"stages", "cli", "train", "eat"} <= set(graph) and "layout" in graph["stages"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_cycle_check_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
