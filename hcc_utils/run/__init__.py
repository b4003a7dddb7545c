"""The book: ``python -m hcc_utils.run book --profile demo [--manifest M] [--force] [--only STEP]``.

Runs the notebooks with papermill, each step only when its inputs changed, and builds the offline HTML book.
``steps`` (the plan), ``hashing`` (step hashes), ``state`` (``run_state.json``), ``execute`` (papermill),
``monitor`` (the terminal lines, the time left), ``book`` (the HTML build), ``audit`` (what a page would fetch),
``assets`` (JavaScript from npm) and ``pipeline`` (the whole run). With ``$HCC_ROOT`` set, data, outputs and the
build go under that folder (see :func:`hcc_utils.config.repo_root`).
"""
from hcc_utils.run.assets import VENDOR_FILES, assets_present, vendor_assets, vendor_dir
from hcc_utils.run.audit import remote_resources
from hcc_utils.run.book import build_book, stage_book_sources, sync_executed
from hcc_utils.run.execute import execute_notebook, run_steps
from hcc_utils.run.hashing import code_digest, code_modules, manifest_digest, step_hashes
from hcc_utils.run.pipeline import RunSummary, prepare_manifest, run_book
from hcc_utils.run.steps import CODE_ROOT, KERNEL, RunError, Step, StepResult, plan

__all__ = [
    "CODE_ROOT", "KERNEL", "RunError", "RunSummary", "Step", "StepResult", "VENDOR_FILES", "assets_present", "build_book",
    "code_digest", "code_modules", "execute_notebook", "manifest_digest", "plan", "prepare_manifest",
    "remote_resources", "run_book", "run_steps", "stage_book_sources", "step_hashes", "sync_executed",
    "vendor_assets", "vendor_dir",
]
