"""The import layering of hcc_utils (README, Layout): a module imports only modules of earlier layers."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hcc_utils"

#: Layers in order; config, files, imaging, progress and stats are leaves (they import no project module).
LAYERS = [
    ["config", "files", "imaging", "progress", "stats", "tables"],
    ["checks", "style"],
    ["manifest"],
    ["phantom"],
    ["synthetic", "preprocess"],
    ["handcrafted", "robustness", "harmonisation", "classifiers", "training"],
    ["segmentation"],
    ["features"],
    ["gradcam", "lits"],
    ["cohort_table", "models", "report", "survival", "nomogram_widget", "book"],
    ["ablation", "radiomics_study", "bundle", "tripod"],
    ["patient_report"],
    ["predict"],
    ["run"],
]
RANK = {m: i for i, layer in enumerate(LAYERS) for m in layer}


def project_imports(path: Path, package: str) -> set[str]:
    """Top-level modules of ``package`` that a file imports (also inside functions; relative imports stay inside
    their own module or subpackage and are not counted)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            parts = node.module.split(".")
            if parts[0] == package:
                out.update(parts[1:2] if len(parts) > 1 else [a.name for a in node.names])
        elif isinstance(node, ast.Import):
            out.update(a.name.split(".")[1] for a in node.names if a.name.startswith(f"{package}."))
    return out


def module_of(path: Path, package_dir: Path = PACKAGE) -> str:
    return path.relative_to(package_dir).with_suffix("").parts[0]


def layering_violations(package_dir: Path = PACKAGE) -> list[str]:
    """Imports against :data:`LAYERS`, and modules not placed in a layer."""
    bad = []
    for path in sorted(package_dir.rglob("*.py")):
        mod, name = module_of(path, package_dir), path.relative_to(package_dir.parent)
        if mod == "__init__":
            continue
        if mod not in RANK:
            bad.append(f"{mod} ({path.name}) is in no layer of LAYERS")
            continue
        for target in sorted(project_imports(path, "hcc_utils") - {mod}):
            if target not in RANK:
                bad.append(f"{name} imports {target}, which is in no layer")
            elif RANK[target] >= RANK[mod]:
                bad.append(f"{name} imports {target} (layer {RANK[target]}), not earlier than "
                           f"{mod} (layer {RANK[mod]})")
    return bad


def test_hcc_utils_imports_follow_the_layers():
    assert layering_violations() == []


def test_a_back_import_is_caught(tmp_path):
    pkg = tmp_path / "hcc_utils"
    (pkg / "stats").mkdir(parents=True)
    (pkg / "config.py").write_text("import yaml\n")
    (pkg / "stats" / "roc.py").write_text("def f():\n    from hcc_utils.survival import run_survival\n")
    (pkg / "survival.py").write_text("from hcc_utils import stats\n")
    bad = layering_violations(pkg)
    assert len(bad) == 1 and "imports survival" in bad[0]


def test_benchmarks_have_no_import_cycle():
    graph = {p.stem: project_imports(p, "benchmarks") for p in (ROOT / "benchmarks").glob("*.py")}

    def reaches(a, b, seen=()):
        return any(n == b or (n not in seen and reaches(n, b, (*seen, n))) for n in graph.get(a, ()))

    cycles = sorted(m for m in graph if reaches(m, m))
    assert cycles == []
