"""The data behind every numbered figure: written as CSV beside the figure and offered on its page."""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from hcc_utils import book, report

ROOT = Path(__file__).resolve().parents[1]
#: A numbered figure's caption ("**Figure 3.**", "**Figure {glue:text}`fig_no_curves`.**") inside a glue:figure.
FIGURE = re.compile(r"```\{glue:figure\} (\w+)\n(?:[^`]|`(?!``))*?\*\*Figure [^*]+\*\*((?:[^`]|`(?!``))*)```")


def test_figure_data_writes_the_csv_and_links_it_from_the_book_root(tmp_path, monkeypatch):
    monkeypatch.setenv("HCC_ROOT", str(tmp_path))
    df = pd.DataFrame({"time": [0.0, 1.5], "survival": [1.0, 0.9]})
    link = book.figure_data(df, tmp_path / "outputs" / "ci" / "survival" / "figure3_km_data.png")
    out = tmp_path / "outputs" / "ci" / "survival" / "figure3_km_data.csv"
    pd.testing.assert_frame_equal(pd.read_csv(out), df)
    assert link == "{download}`figure3_km_data.csv </outputs/ci/survival/figure3_km_data.csv>`"
    assert book.figure_data(df, out, label="KM steps").startswith("{download}`KM steps <")
    # a file outside the book's root: a path relative to the executed pages
    other = tmp_path.parent / f"{tmp_path.name}-elsewhere" / "d.csv"
    assert book.figure_data(df, other).endswith(f"<../../../{tmp_path.name}-elsewhere/d.csv>`")


def test_roc_points_are_the_curves_of_each_model_and_cohort():
    rng = np.random.default_rng(0)
    n = 40
    pred = pd.concat([pd.DataFrame({"patient_id": np.arange(n), "cohort": c, "model": m,
                                    "prob": rng.uniform(size=n), "er": rng.integers(0, 2, n)})
                      for c in ("development", "validation") for m in ("A", "B")])
    pts = report.roc_points(pred, ["A", "B"], labels={"A": "model A"})
    assert set(map(tuple, pts[["cohort", "model"]].drop_duplicates().to_numpy())) == {
        ("development", "A"), ("development", "B"), ("validation", "A"), ("validation", "B")}
    for _, g in pts.groupby(["cohort", "model"]):
        assert g["fpr"].is_monotonic_increasing and g["tpr"].iloc[-1] == 1.0
    assert set(pts.loc[pts.model == "A", "label"]) == {"model A"}


def _figures(nb_path: Path) -> list[tuple[str, str]]:
    text = "\n".join(c.source for c in nbformat.read(str(nb_path), as_version=4).cells if c.cell_type == "markdown")
    return FIGURE.findall(text)


@pytest.mark.parametrize("nb_path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.stem)
def test_every_numbered_figure_offers_its_data(nb_path):
    nb = nbformat.read(str(nb_path), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for key, caption in _figures(nb_path):
        m = re.search(r"Data: \{glue:md\}`(\w+):myst`", caption)
        assert m, f"{nb_path.name}: the caption of {key} offers no data file"
        data_key = m.group(1)
        # glued through the one helper, under its own key or in a loop over the figures' keys
        looped = 'key=f"{key}_data"' in code and f'("{data_key.removesuffix("_data")}",' in code
        assert "book.figure_data(" in code and (f'key="{data_key}"' in code or looped), \
            f"{nb_path.name}: {data_key} is not written by book.figure_data"


def test_the_figures_of_the_book_are_all_found():
    found = {p.stem: [k for k, _ in _figures(p)] for p in sorted((ROOT / "notebooks").glob("*.ipynb"))}
    assert sum(map(len, found.values())) >= 17
    assert found["05_survival_nomogram"] == ["fig_km", "fig_nomogram", "fig_calibration", "fig_decision", "fig_tdauc"]
