"""One self-contained HTML page per predicted patient (no network: styles inline, figures as base64 PNG).

The page shows the probabilities and risk groups, the warnings, the CT slice of largest predicted tumour of each
phase with the predicted outline, the Grad-CAM maps of the DSFR model's top features on that patient
(:func:`hcc_utils.gradcam.gradcam`), and the nomogram with this patient's points marked. The patient is named by
``patient_id`` only. It prints to PDF from the browser (A4, figures kept whole).

Stable element ids (tests read them): ``#patient-id``, ``#dsfrc-prob``, ``#dsfr-signature``, ``#nomo-rfs``,
``#nomo-er``, ``#nomo-points``, ``#risk-group``, each with the full-precision value in ``data-value``;
``#warnings li`` one per warning.
"""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import numpy as np

from hcc_utils import gradcam as gc
from hcc_utils import preprocess as pp
from hcc_utils import style

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:1.5rem auto;max-width:60rem;
color:#1b1b1b;line-height:1.4;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;
margin-top:1.6rem}
table.summary{border-collapse:collapse;margin:.6rem 0}table.summary th,table.summary td{border:1px solid #bbb;
padding:.3rem .6rem;text-align:left;vertical-align:top}table.summary th{background:#f3f3f3;font-weight:600}
.value{font-weight:700;font-variant-numeric:tabular-nums}.high{color:#a40000}.low{color:#1a5e1a}
#warnings li{margin:.2rem 0}.nowarn{color:#1a5e1a}figure{margin:.8rem 0;break-inside:avoid}
figure img{max-width:100%;height:auto;border:1px solid #ddd}figcaption{font-size:.9rem;color:#444}
.note{font-size:.85rem;color:#555}footer{margin-top:2rem;font-size:.8rem;color:#555;border-top:1px solid #ccc;
padding-top:.5rem}
@media print{body{margin:0;max-width:none}h2{break-after:avoid}figure,table{break-inside:avoid}
@page{size:A4;margin:14mm}}
"""


def _png(fig, dpi: int = 130) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def ct_figure(row, per: dict, windows: dict):
    """CT slice of largest predicted tumour of each phase (image grid) with the predicted outline (red)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    import SimpleITK as sitk

    from hcc_utils.imaging import read_image

    fig, axes = plt.subplots(1, len(per), figsize=(4.2 * len(per), 4.4), squeeze=False)
    for ax, (ph, r) in zip(axes[0], per.items()):
        img_col, uid_col, _ = pp.PHASE_COLUMNS[ph]
        ct = sitk.GetArrayFromImage(read_image(row[img_col], pp._col(row, uid_col)))
        m = sitk.GetArrayViewFromImage(r["mask_image"]) > 0
        area = m.reshape(m.shape[0], -1).sum(1)
        z = int(np.argmax(area)) if area.any() else ct.shape[0] // 2
        w = windows[ph]
        lo = float(w["level"]) - float(w["width"]) / 2
        ax.imshow(np.clip(ct[z], lo, lo + float(w["width"])), cmap="gray")
        if m[z].any():
            ax.contour(m[z], levels=[0.5], linewidths=1.2, **style.CONTOUR_PREDICTION)
        sp = r["mask_image"].GetSpacing()
        vol = float(m.sum()) * float(np.prod(sp)) / 1000.0
        ax.set_title(f"{ph}: slice {z}" + (f", tumour {vol:.1f} mL" if area.any() else ", no predicted tumour"),
                     fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def gradcam_panels(bundle, per: dict, pid: str) -> list[dict]:
    """Grad-CAM of the DSFR model's top features on this patient (slice of largest predicted tumour per phase)."""
    import torch

    from hcc_utils import features as fe

    cfg = bundle.settings["settings"].get("gradcam", {}) or {}
    phase = bundle.models["phase"]
    top = gc.top_features(bundle.weights(), int(cfg.get("n_features", 6)), None if phase == "DP" else phase)
    panels = []
    for _, ft in top.iterrows():
        ph = ft["phase"]
        r = per[ph]
        i = int(np.argmax(r["areas"]))
        z = int(r["slices"][i])
        img = np.asarray(r["case"].image[z], dtype=np.float32)
        prob = r["prob"][z]
        region = prob >= 0.5
        if not region.any():
            region = fe.fallback_region(torch.from_numpy(np.ascontiguousarray(prob))).numpy()
        cam, _ = gc.gradcam(bundle.network(ph), img, region.astype(np.float32), ft["layer"], int(ft["channel"]),
                            str(cfg.get("method", "hires")))
        panels.append({"feature": ft["feature"], "weight": float(ft["weight"]), "patient_id": pid, "z": z,
                       "image": img, "cam": cam, "outline": region, "location": f"weight {ft['weight']:+.3f}"})
    return panels


def nomogram_figure(spec: dict, points: dict, total: float, rfs: float):
    """The nomogram (points, one axis per input, total points, RFS) with this patient's points in red."""
    import matplotlib.pyplot as plt

    vars_ = spec["variables"]
    scale = float(spec["scale"])
    tmax = sum((v["lp_max"] - v["lp_min"]) * scale for v in vars_) or 1.0
    rows = ["Points"] + [v.get("axis_label") or v["name"] for v in vars_] + ["Total points",
                                                                           f"{spec['landmark']:g}-month RFS"]
    fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(rows) + 0.6))
    ys = list(range(len(rows)))[::-1]

    def axis(y, ticks, labels):
        ticks = list(ticks)
        ax.plot([min(ticks), max(ticks)], [y, y], color="black", lw=1)
        for t, lab in zip(ticks, labels):
            ax.plot([t, t], [y, y + 0.12], color="black", lw=1)
            ax.text(t, y + 0.16, lab, ha="center", va="bottom", fontsize=7)

    axis(ys[0], np.linspace(0, 100, 11), [f"{t:g}" for t in np.linspace(0, 100, 11)])
    for y, v in zip(ys[1:], vars_):
        if v["type"] == "continuous":
            vals = np.linspace(v["min"], v["max"], 5)
            pts = [(v["beta"] * x / v["per"] - v["lp_min"]) * scale for x in vals]
            labs = [f"{x:g}" for x in np.round(vals, 3)]
        else:
            pts = [(lp - v["lp_min"]) * scale for lp in v["lp"]]
            labs = [str(lv) for lv in v["levels"]]
        axis(y, pts, labs)
        p = points.get(v["name"])
        if p is not None and math.isfinite(p):
            ax.plot([p], [y], "o", color="red", ms=7, zorder=5)
            ax.plot([p, p], [y, ys[0]], color="red", lw=0.6, ls=":", zorder=4)
    # total points drawn on the same width as the points axis
    t_ticks = np.linspace(0, tmax, 6)
    axis(ys[-2], t_ticks * 100 / tmax, [f"{t:.0f}" for t in t_ticks])
    s0, centre, off = float(spec["baseline_survival"]), float(spec["centre"]), float(spec["lp_offset"])
    surv, pos = [], []
    for s in (0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1):
        tp = (centre + math.log(math.log(s) / math.log(s0)) - off) * scale
        if 0 <= tp <= tmax:
            surv.append(s)
            pos.append(tp * 100 / tmax)
    if pos:
        axis(ys[-1], pos, [f"{s:g}" for s in surv])
    if math.isfinite(total):
        x = total * 100 / tmax
        ax.plot([x], [ys[-2]], "o", color="red", ms=7, zorder=5)
        ax.plot([x, x], [ys[-2], ys[-1]], color="red", lw=0.8, ls=":")
        ax.plot([x], [ys[-1]], "v", color="red", ms=7, zorder=5)
        ax.text(x, ys[-1] - 0.35, f"RFS {100 * rfs:.1f}%", color="red", ha="center", va="top", fontsize=8)
    ax.set_yticks(ys)
    ax.set_yticklabels(rows, fontsize=8)
    ax.set_xticks([])
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.set_xlim(-5, 105)
    ax.set_ylim(-1, len(rows))
    fig.tight_layout()
    return fig


def _pct(x) -> str:
    return "not computed" if x is None or not math.isfinite(float(x)) else f"{100 * float(x):.1f}%"


def _cell(id_, value, text, cls="value") -> str:
    v = "" if value is None or (isinstance(value, float) and not math.isfinite(value)) else repr(float(value))
    return f'<td id="{id_}" class="{cls}" data-value="{v}">{html.escape(text)}</td>'


def render_html(detail: dict, figures: dict, bundle) -> str:
    """The page of one patient.

    Parameters
    ----------
    detail : dict
        One patient's result (:func:`hcc_utils.predict.predict` writes it to ``patients/<name>.json``).
    figures : dict
        ``ct``, ``gradcam``, ``nomogram``: data URIs (or None when a figure could not be drawn, with the reason in
        ``<name>_error``).
    bundle : hcc_utils.bundle.Bundle

    Returns
    -------
    str
    """
    e = html.escape
    pid = str(detail["patient_id"])
    lm = f"{detail['landmark_months']:g}"
    grp = detail.get("nomogram_risk_group") or ""
    rows = [
        f"<tr><th>DSFR-C probability of early recurrence (&lt; {lm} months)</th>"
        + _cell("dsfrc-prob", detail["dsfrc_er_prob"], _pct(detail["dsfrc_er_prob"]))
        + f"<td>{e(detail['dsfrc_class'])} (threshold {100 * detail['dsfrc_threshold']:.1f}%)</td></tr>",
        f"<tr><th>DSFR signature ({e(detail['dsfr_model'])}: probability of early recurrence from the images)</th>"
        + _cell("dsfr-signature", detail["dsfr_signature"], f"{detail['dsfr_signature']:.3f}")
        + f"<td>{e(detail['dsfr_class'])} (threshold {detail['dsfr_threshold']:.3f})</td></tr>",
        f"<tr><th>Nomogram: {lm}-month recurrence-free survival</th>"
        + _cell("nomo-rfs", detail["nomogram_rfs"], _pct(detail["nomogram_rfs"]))
        + f"<td>early recurrence {e(_pct(detail['nomogram_er_prob']))}</td></tr>",
        "<tr><th>Nomogram total points</th>"
        + _cell("nomo-points", detail["nomogram_total_points"],
                "not computed" if not math.isfinite(detail["nomogram_total_points"])
                else f"{detail['nomogram_total_points']:.1f}") + "<td></td></tr>",
        f"<tr><th>Nomogram risk group</th><td id=\"risk-group\" class=\"value {e(grp)}\">{e(grp or 'not computed')}"
        f"</td><td>high when the predicted early-recurrence probability is at least "
        f"{_pct(bundle.nomogram.spec.get('risk_threshold'))}</td></tr>",
    ]
    er = detail.get("nomogram_er_prob")
    er_v = "" if er is None or not math.isfinite(float(er)) else repr(float(er))
    hidden = f'<span id="nomo-er" hidden data-value="{er_v}">{e(_pct(er))}</span>'
    warns = detail.get("warnings") or []
    wl = ("<ul>" + "".join(f'<li class="warning">{e(w)}</li>' for w in warns) + "</ul>" if warns
          else '<p class="nowarn">None: every input lies within what the development cohort covered.</p>')

    def fig(key, caption):
        uri = figures.get(key)
        if not uri:
            return f'<p class="note">{e(caption.split(".")[0])}: not drawn ({e(figures.get(key + "_error", ""))}).</p>'
        return f'<figure><img alt="{e(caption)}" src="{uri}"><figcaption>{e(caption)}</figcaption></figure>'

    s = bundle.summary["cohorts"].get("development", {})
    code = bundle.code
    bc = detail.get("book_cohort")
    cohort_note = f"This patient was part of the book's {e(bc)} cohort. " if bc else ""
    nomo_caption = ("The nomogram with this patient's points (red): one axis per input, total points and the "
                    f"predicted {lm}-month recurrence-free survival.")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Early-recurrence report: {e(pid)}</title><style>{_CSS}</style></head>
<body><main id="hcc-patient-report" data-patient-id="{e(pid)}">
<h1>Early recurrence of HCC after resection: preoperative prediction</h1>
<p>Patient: <strong id="patient-id">{e(pid)}</strong></p>
<p class="note">Values from the {e(detail['value_kind'])}.
{cohort_note}
Research use: the models were developed on {s.get('n', '?')} patients ({s.get('n_er', '?')} early recurrences)
and are not a medical device.</p>
<h2>Prediction</h2>
<table class="summary">{''.join(rows)}</table>{hidden}
<h2>Warnings</h2><div id="warnings">{wl}</div>
<h2>Predicted tumour</h2>
{fig('ct', 'CT slice of largest predicted tumour per phase, predicted outline in red.')}
<h2>Where the top DSFR features look</h2>
{fig('gradcam', 'Grad-CAM maps of the deep features with the largest weights in the DSFR model, on this patient; '
     'white outline: the predicted tumour the feature is pooled over.')}
<h2>Nomogram</h2>
{fig('nomogram', nomo_caption)}
<footer>Study bundle written {e(str(bundle.meta.get('created')))} (profile {e(str(bundle.meta.get('profile')))});
code hcc_utils {e(str(code.get('package_version')))}, commit {e(str(code.get('commit') or 'unknown'))}, sources
{e(str(code.get('source_digest', ''))[:12])}. Masks, features and models as in the book's chapters 02-05.</footer>
</main></body></html>
"""


def write_report(detail: dict, bundle, row, per: dict, path: str | Path) -> Path:
    """Draw the figures and write the page of one patient.

    Parameters
    ----------
    detail : dict
        The patient's result (see :func:`render_html`).
    bundle : hcc_utils.bundle.Bundle
    row : pandas.Series
        The patient's manifest row (absolute paths).
    per : dict
        Phase -> :func:`hcc_utils.predict.segment_phase` output.
    path : path
        The HTML file to write.

    Returns
    -------
    Path
    """
    import matplotlib

    matplotlib.use("Agg")
    figures: dict = {}
    makers = {
        "ct": lambda: ct_figure(row, per, bundle.settings["settings"]["windows"]),
        "gradcam": lambda: gc.plot_gradcam(gradcam_panels(bundle, per, str(detail["patient_id"])), crop=True),
        "nomogram": lambda: nomogram_figure(bundle.nomogram.spec, detail.get("nomogram_points", {}),
                                            float(detail["nomogram_total_points"]), float(detail["nomogram_rfs"])),
    }
    import warnings

    for key, make in makers.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # tight_layout on small panels
                figures[key] = _png(make())
        except Exception as exc:  # noqa: BLE001 - a figure that fails is named on the page, the numbers stay
            figures[key], figures[key + "_error"] = None, f"{type(exc).__name__}: {exc}"
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(detail, figures, bundle), encoding="utf-8")
    return path
