"""Live nomogram for JupyterLab (ipywidgets): one slider or dropdown per variable of the final model.

It reads the same spec as the static JavaScript calculator (:class:`hcc_utils.stats.NomogramCalculator`) and
recomputes points, total, predicted RFS and risk group with its :meth:`~hcc_utils.stats.NomogramCalculator.predict`.
In a static HTML page no kernel runs: the book shows the JS calculator (:func:`hcc_utils.survival.nomogram_html`).
"""
from __future__ import annotations

import html

from hcc_utils.stats import NomogramCalculator


class NomogramWidget:
    """ipywidgets nomogram.

    Parameters
    ----------
    nomogram : NomogramCalculator or dict
        A :class:`~hcc_utils.stats.NomogramCalculator` or its spec (:meth:`~hcc_utils.stats.NomogramCalculator.to_dict`).

    Attributes
    ----------
    controls : dict
        Variable name -> widget (``FloatSlider`` or ``Dropdown``).
    output : ipywidgets.HTML
        The result panel.
    result : dict
        The last :meth:`NomogramCalculator.predict` result.
    """

    def __init__(self, nomogram: NomogramCalculator | dict):
        import ipywidgets as w

        self.nomogram = (nomogram if isinstance(nomogram, NomogramCalculator)
                         else NomogramCalculator.from_dict(nomogram))
        self.controls = {}
        self.points = {}
        rows = []
        style = {"description_width": "initial"}
        layout = w.Layout(width="420px")
        for v in self.nomogram.variables:
            if v["type"] == "continuous":
                c = w.FloatSlider(value=float(v["default"]), min=float(v["min"]), max=float(v["max"]),
                                  step=float(v["step"]), description=v.get("axis_label", v["label"]), style=style, layout=layout,
                                  continuous_update=True, readout_format=".4g")
            else:
                c = w.Dropdown(options=list(v["levels"]), value=str(v["default"]), description=v.get("axis_label", v["label"]),
                               style=style, layout=layout)
            c.observe(self._on_change, names="value")
            self.controls[v["name"]] = c
            self.points[v["name"]] = w.HTML()
            rows.append(w.HBox([c, self.points[v["name"]]]))
        self.output = w.HTML()
        title = w.HTML(f"<b>{html.escape(self.nomogram.spec.get('title', 'Nomogram'))}</b>")
        self.box = w.VBox([title, *rows, self.output])
        self.result: dict = {}
        self.update()

    def values(self) -> dict:
        """Current input values.

        Returns
        -------
        dict
            Variable name -> value.
        """
        return {k: c.value for k, c in self.controls.items()}

    def _on_change(self, _change):
        self.update()

    def update(self) -> dict:
        """Recompute and redraw.

        Returns
        -------
        dict
            The :meth:`NomogramCalculator.predict` result.
        """
        r = self.nomogram.predict(self.values())
        for k, lab in self.points.items():
            lab.value = f"<span data-points-for='{k}'>{r['points'][k]:.1f} points</span>"
        lm = self.nomogram.spec["landmark"]
        group = r["risk_group"] or "n/a"
        self.output.value = (
            f"<div>Total points: <b>{r['total_points']:.1f}</b><br>"
            f"Predicted {lm:g}-month recurrence-free survival: <b>{100 * r['rfs']:.1f}%</b><br>"
            f"Probability of recurrence within {lm:g} months: <b>{100 * r['er_prob']:.1f}%</b><br>"
            f"Risk group: <b>{group}</b></div>")
        self.result = r
        return r

    def _ipython_display_(self):
        from IPython.display import display

        display(self.box)


def nomogram_widget(nomogram: NomogramCalculator | dict) -> NomogramWidget:
    """Build the live nomogram widget (display it as the last expression of a cell).

    Parameters
    ----------
    nomogram : NomogramCalculator or dict

    Returns
    -------
    NomogramWidget
    """
    return NomogramWidget(nomogram)
