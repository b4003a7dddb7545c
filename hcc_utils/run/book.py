"""The book build: the book's sources staged under ``$HCC_ROOT``, the executed notebooks copied in (a page saying
why for each chapter left out), and the HTML built with Jupyter Book 1.x into ``book/_build/html``."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import nbformat

from hcc_utils.run.audit import remote_resources
from hcc_utils.run.steps import CODE_ROOT, RunError, Step, StepResult

BOOK_SOURCES = ("_config.yml", "_toc.yml", "book")
#: The stored benchmark results the book's benchmarks page reads (``make bench``, ``make bench-book``).
BENCHMARK_RESULTS = CODE_ROOT / "benchmarks" / "latest.json"
BENCHMARK_BOOK_RESULTS = CODE_ROOT / "benchmarks" / "latest-book.json"
#: The page (and its figure) written at each build under the book's root; listed in ``_toc.yml``, not in git.
BENCHMARKS_PAGE = Path("book") / "benchmarks.md"
BENCHMARKS_INTRO = (
    "What `make bench` (stages, scaling, ratios, FLOPs) and `make bench-book` (the whole `make book`, cold and warm) "
    "measured, read from the stored results `benchmarks/{results}`{book} when this book was built; "
    "`benchmarks/README.md` shows the same tables. The figures describe the machine below, which need not be the "
    "one that built this book.")


def fallback_page(step: Step, reason: str) -> str:
    """The Markdown page that stands for a chapter left out of the build, saying why."""
    return (f"# {step.title or step.name}\n\n"
            f"This chapter was left out of this build: {reason}.\n\n"
            f"It is produced by `notebooks/{step.notebook}.ipynb`; once its data are available, "
            f"`make book` runs it and this page is replaced by the executed notebook.\n")


def stage_book_sources(root: Path) -> None:
    """Copy the book's sources (config, toc, pages, vendored JS) to ``root`` when it is not the code folder."""
    if Path(root).resolve() == CODE_ROOT:
        return
    for name in BOOK_SOURCES:
        src, dst = CODE_ROOT / name, Path(root) / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("_build", "executed", ".ipynb_checkpoints"))
        else:
            shutil.copy2(src, dst)


def sync_executed(steps: list[Step], results: list[StepResult], executed_dir: Path, book_executed: Path,
                  state: dict | None = None) -> None:
    """Refresh ``book/executed/`` with this profile's executed notebooks and the pages of left-out chapters.

    The folder is assembled under a temporary name and then swapped in. With ``state`` (the run state), a step that
    did not run now and whose recorded state is not ``ok`` (interrupted, failed, stale) gets a page saying so
    instead of an old executed copy.
    """
    book_executed = Path(book_executed)
    work = book_executed.with_name(book_executed.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    by_name = {r.name: r for r in results}
    recorded = (state or {}).get("steps", {})
    for s in steps:
        r = by_name.get(s.name)
        nb = Path(executed_dir) / f"{s.name}.ipynb"
        untrusted = (state is not None and (r is None or r.status not in ("ran", "skipped"))
                     and recorded.get(s.name, {}).get("status") not in (None, "ok", "unavailable", "missing"))
        if r is not None and r.status in ("unavailable", "missing"):
            (work / f"{s.name}.md").write_text(fallback_page(s, r.reason))
        elif untrusted:
            status = recorded[s.name].get("status")
            (work / f"{s.name}.md").write_text(fallback_page(
                s, f"its last run did not complete or its inputs changed since (state: {status}); rerun it"))
        elif nb.exists():
            copy_for_book(nb, work / nb.name, title_suffix(s))
        else:
            (work / f"{s.name}.md").write_text(fallback_page(s, "this step has not been run yet"))
    if book_executed.exists():
        shutil.rmtree(book_executed)
    work.replace(book_executed)


def title_suffix(step: Step) -> str:
    """What tells apart two book pages made from one notebook: the phase, or a chapter other than the default."""
    if step.params.get("phase"):
        return f" ({step.params['phase']})"
    chapter = step.params.get("chapter")
    if chapter and chapter != "synthetic":
        return f" ({chapter.upper() if chapter.startswith('gse') else chapter})"
    return ""


def copy_for_book(src: Path, dst: Path, suffix: str = "") -> None:
    """Copy an executed notebook for the book, folding the parameter cell away (``hide-input``), leaving out the cell
    papermill injected (``remove-cell``: its values belong to this machine's run, local paths included), and appending
    ``suffix`` (:func:`title_suffix`) to its first heading, so the table of contents tells the AP and PP pages apart."""
    nb = nbformat.read(str(src), as_version=4)
    titled = not suffix
    for c in nb.cells:
        tags = c.metadata.get("tags", [])
        if "injected-parameters" in tags:
            if "remove-cell" not in tags:
                c.metadata["tags"] = [*tags, "remove-cell"]
        elif "parameters" in tags and "hide-input" not in tags:
            c.metadata["tags"] = [*tags, "hide-input"]
        if not titled and c.cell_type == "markdown" and c.source.lstrip().startswith("# "):
            first, _, rest = c.source.lstrip().partition("\n")
            c.source = first.rstrip() + suffix + ("\n" + rest if rest else "")
            titled = True
    nbformat.write(nb, str(dst))


def write_benchmarks_page(root: Path, results: Path | None = None, book_results: Path | None = None) -> Path:
    """Write the book's benchmarks page, ``<root>/book/benchmarks.md``, from the stored benchmark results.

    Every number comes from the results JSON (rendered by :func:`benchmarks.report.write_report`, as for
    ``benchmarks/README.md``); without results, the page says that none are stored and how to measure them.

    Parameters
    ----------
    root : Path
        The book's root (``$HCC_ROOT``).
    results, book_results : Path, optional
        The results of ``make bench`` and of ``make bench-book`` (default :data:`BENCHMARK_RESULTS`,
        :data:`BENCHMARK_BOOK_RESULTS`); a missing file is left out.

    Returns
    -------
    Path
        The page.
    """
    results = Path(results or BENCHMARK_RESULTS)
    book_results = Path(book_results or BENCHMARK_BOOK_RESULTS)
    page = Path(root) / BENCHMARKS_PAGE
    plot = page.with_name("benchmarks_scaling.png")
    page.parent.mkdir(parents=True, exist_ok=True)
    plot.unlink(missing_ok=True)  # a figure of earlier results never stays beside new ones
    if not results.is_file():
        page.write_text(
            "# Benchmarks\n\nNo benchmark results are stored in the checkout that built this book "
            f"(`benchmarks/{results.name}` is missing), so this page has no figures. `make bench` measures the "
            "stages of the book, their scaling with the cohort and the U-Net FLOPs; `make bench-book` times the "
            "whole `make book`. Their results are kept in `benchmarks/` and the next build shows them here.\n")
        return page
    if str(CODE_ROOT) not in sys.path:  # the benchmarks package sits beside hcc_utils, not installed with it
        sys.path.insert(0, str(CODE_ROOT))
    from benchmarks.report import write_report

    extra = book_results.is_file()
    intro = BENCHMARKS_INTRO.format(results=results.name,
                                    book=f" and `benchmarks/{book_results.name}`" if extra else "")
    write_report(results, readme=page, plot=plot, book_json=book_results if extra else None, intro=intro)
    return page


def build_book(root: Path, log: Callable[[str], None] = print) -> Path:
    """Build the HTML book with Jupyter Book 1.x into ``<root>/book/_build/html``."""
    exe = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(exe) if exe.exists() else (shutil.which("jupyter-book") or "jupyter-book"),
           "build", str(root), "--path-output", str(Path(root) / "book")]
    log("building the book: " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=str(root), capture_output=True, text=True, encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        raise RunError(f"jupyter-book build failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n"
                       f"{proc.stderr[-4000:]}")
    html = Path(root) / "book" / "_build" / "html" / "index.html"
    if not html.exists():
        raise RunError(f"jupyter-book reported success but {html} does not exist:\n{proc.stdout[-2000:]}")
    remote = remote_resources(html.parent)
    for fname, what, url in remote[:20]:
        log(f"warning: {fname} loads {url} from the network ({what})")
    return html
