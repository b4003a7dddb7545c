"""Step hashing: a SHA-256 over everything a step's results depend on, so an unchanged step is skipped.

A step's hash covers the manifest and every file it names, the step's parameters, the profile's settings (except
:data:`RESULT_NEUTRAL_SETTINGS`), the ``hcc_utils`` code its notebook imports (transitively), the notebook's cell
sources, its extra input files and the hashes of its upstream steps.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path
from typing import Callable

import nbformat

from hcc_utils.files import file_sha256
from hcc_utils.run.steps import CODE_ROOT, Step
from hcc_utils.tables import TableError, read_table, split_spec

PACKAGE = CODE_ROOT / "hcc_utils"
#: The orchestration package: it computes nothing, so editing it redoes no step.
ORCHESTRATION = "run"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_digest(path: Path) -> str:
    """SHA-256 of a file's content (``missing`` when it does not exist)."""
    path = Path(path)
    return file_sha256(path) if path.is_file() else "missing"


def manifest_digest(manifest: Path | None) -> str:
    """Hash of everything a manifest describes: the manifest file, the content of the clinical/visual/outcome tables
    it names and the content of every image and mask file (every file of a DICOM folder).

    The manifest is read with :func:`hcc_utils.tables.read_table`, the reader validation uses, so every variant the
    check accepts (``;`` or tab separators, BOM, CRLF, case and spaces in headers, an Excel manifest) is hashed the
    same way; a manifest that cannot be read hashes as its bytes alone (validation then reports why).
    """
    if manifest is None:
        return "none"
    manifest = Path(manifest)
    parts = [file_digest(manifest)]
    if manifest.is_file():
        try:
            df = read_table(manifest)
        except (TableError, OSError):
            return _sha("\n".join(parts).encode())
        base = manifest.resolve().parent
        tables: set[str] = set()
        images: set[str] = set()
        for col in df.columns:
            values = {v for v in df[col] if v}
            if col in ("clinical_file", "visual_file", "outcome_file"):
                tables |= values
            elif col.startswith(("ct_", "mask_")):
                images |= values
        for t in sorted(tables):
            whole = base / t
            file = whole if whole.exists() else split_spec(str(whole))[0]
            parts.append(f"{t}:{file_digest(file)}")
        for im in sorted(images):
            p = base / im
            files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
            parts.extend(f"{f}:{file_digest(f)}" for f in files)
    return _sha("\n".join(parts).encode())


def code_digest(package: Path = PACKAGE, modules: set[str] | None = None) -> str:
    """Hash of the content of the ``hcc_utils`` files (the orchestration, ``hcc_utils.run``, excluded).

    Parameters
    ----------
    package : Path
        The package folder.
    modules : set of str, optional
        Only these modules' sources (dotted names, e.g. ``hcc_utils.stats.roc``) plus every non-Python file (assets);
        None: every file of the package.
    """
    h = hashlib.sha256()
    package = Path(package)
    for p in sorted(package.rglob("*")):
        if (not p.is_file() or p.relative_to(package).with_suffix("").parts[0] == ORCHESTRATION
                or "__pycache__" in p.parts or p.suffix in (".pyc", ".pyo")):
            continue
        if modules is not None and p.suffix == ".py" and _module_name(p, package) not in modules:
            continue
        h.update(str(p.relative_to(package)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _module_name(path: Path, package: Path) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _module_file(name: str, package: Path) -> Path | None:
    base = package.parent.joinpath(*name.split("."))
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imported_names(source: str, current: str, is_package: bool) -> set[str]:
    """Absolute dotted names a source imports (relative imports resolved against ``current``)."""
    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = current.split(".") if is_package else current.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def _dynamic_import(source: str) -> bool:
    """Whether a source imports modules by computed name (then its dependencies cannot be read from it)."""
    return bool(re.search(r"import_module\s*\(|__import__\s*\(\s*(?!['\"](?!hcc_utils))", source))


def code_modules(notebook: Path, package: Path = PACKAGE) -> set[str] | None:
    """The ``hcc_utils`` modules a notebook uses: its imports and, transitively, theirs (with parent packages).

    Returns None (meaning: the whole package) when a cell cannot be parsed or the notebook calls ``importlib``.
    """
    pkg = package.name
    nb = nbformat.read(str(notebook), as_version=4)
    todo: set[str] = set()
    for c in nb.cells:
        if c.cell_type != "code":
            continue
        src = "\n".join(line for line in c.source.splitlines() if not line.lstrip().startswith(("%", "!")))
        if _dynamic_import(src):
            return None
        try:
            todo |= _imported_names(src, "__main__", False)
        except SyntaxError:
            return None
    seen: set[str] = set()
    todo = {n for n in todo if n == pkg or n.startswith(pkg + ".")}
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
            mod = ".".join(parts[:k])
            f = _module_file(mod, package)
            if f is None or mod in seen:
                continue
            seen.add(mod)
            try:
                names = _imported_names(f.read_text(), mod, f.name == "__init__.py")
            except SyntaxError:
                return None
            if _dynamic_import(f.read_text()):
                return None
            todo |= {n for n in names if (n == pkg or n.startswith(pkg + ".")) and n not in seen}
    return seen


def notebook_code_digest(notebook: Path) -> str:
    """Hash of the ``hcc_utils`` code a notebook uses (its modules and, transitively, theirs; all when unsure)."""
    return code_digest(modules=code_modules(notebook))


def notebook_digest(path: Path) -> str:
    """Hash of a notebook's cell types, sources and tags (tags decide what the page shows; outputs and the rest of
    the metadata do not count)."""
    nb = nbformat.read(str(path), as_version=4)
    cells = [[c.cell_type, c.source, list(c.get("metadata", {}).get("tags", []))] for c in nb.cells]
    return _sha(json.dumps(cells, sort_keys=True).encode())


#: Profile settings that change how fast a step runs but never its results (tested): left out of the step hashes, so
#: changing them does not redo finished steps.
RESULT_NEUTRAL_SETTINGS = (("models", "n_jobs"),)


def _hashed_settings(settings: dict) -> dict:
    out = json.loads(json.dumps(settings, default=str))
    for section, key in RESULT_NEUTRAL_SETTINGS:
        if isinstance(out.get(section), dict):
            out[section].pop(key, None)
    return out


def step_hashes(steps: list[Step], *, notebooks_dir: Path, manifest_hash: str,
                code_hash: str | Callable[[Path], str], settings: dict) -> dict[str, str]:
    """The input hash of every step, in plan order (a step's hash includes its upstream steps' hashes).

    ``code_hash`` is a fixed string or a function of the notebook's path (see :func:`notebook_code_digest`).
    """
    out: dict[str, str] = {}
    settings_json = json.dumps(_hashed_settings(settings), sort_keys=True, default=str)
    for s in steps:
        nb = Path(notebooks_dir) / f"{s.notebook}.ipynb"
        payload = {
            "step": s.name,
            "manifest": manifest_hash,
            "params": json.dumps(s.params, sort_keys=True, default=str),
            "settings": settings_json,
            "code": (code_hash(nb) if nb.exists() else "missing") if callable(code_hash) else code_hash,
            "notebook": notebook_digest(nb) if nb.exists() else "missing",
            "inputs": [file_digest(p) for p in s.inputs],
            "upstream": [out.get(d, "none") for d in s.deps],
        }
        out[s.name] = _sha(json.dumps(payload, sort_keys=True).encode())
    return out
