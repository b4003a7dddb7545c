"""JavaScript vendoring: require.js, the Jupyter widgets HTML manager and MathJax copied from npm into
``book/_static/vendor/`` so that the HTML book loads nothing from the internet."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

from hcc_utils.run.steps import CODE_ROOT, RunError

#: npm packages vendored for the offline book: (package spec, [(source inside the package, target under vendor/)])
NPM_ASSETS = [
    ("requirejs@2.3.8", [("require.js", "require.js")]),
    ("@jupyter-widgets/html-manager@1.0.15", [("dist", "html-manager")]),
    ("mathjax@3.2.2", [("es5", "mathjax")]),
]
#: Files that must exist under ``book/_static/vendor`` (what ``_config.yml`` points at).
VENDOR_FILES = ("require.js", "html-manager/embed-amd.js", "mathjax/tex-mml-chtml.js")


def vendor_dir(root: Path | None = None) -> Path:
    """``book/_static/vendor`` under ``root`` (default: the code folder)."""
    return Path(root or CODE_ROOT) / "book" / "_static" / "vendor"


def assets_present(root: Path | None = None) -> bool:
    """Whether every file of :data:`VENDOR_FILES` is in place."""
    v = vendor_dir(root)
    return all((v / f).is_file() for f in VENDOR_FILES)


def vendor_assets(root: Path | None = None, cache: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Install require.js, @jupyter-widgets/html-manager and MathJax with npm and copy them to ``book/_static/vendor``.

    Raises
    ------
    RunError
        When npm is not available or an install fails.
    """
    npm = shutil.which("npm")
    if npm is None:
        raise RunError("npm is not available: the offline book needs require.js, @jupyter-widgets/html-manager and "
                       "MathJax from npm. Install Node.js/npm (Debian: `apt-get install npm`) and rerun "
                       "`make assets`.")
    cache = Path(cache or CODE_ROOT / ".cache" / "npm")
    cache.mkdir(parents=True, exist_ok=True)
    specs = [spec for spec, _ in NPM_ASSETS]
    cmd = [npm, "install", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(cache), *specs]
    log("vendoring offline JavaScript: " + " ".join(cmd[1:]))
    proc = subprocess.run(cmd, capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RunError(f"npm install failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = vendor_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    for spec, files in NPM_ASSETS:
        pkg = spec.rsplit("@", 1)[0]
        for src_rel, dst_rel in files:
            src = cache / "node_modules" / pkg / src_rel
            dst = out / dst_rel
            if not src.exists():
                raise RunError(f"{src} is missing after `npm install {spec}`")
            if src.is_dir():
                if dst.exists():
                    shutil.rmtree(dst)
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.map"))
            else:
                shutil.copy2(src, dst)
    log(f"offline JavaScript in {out}")
    return out
