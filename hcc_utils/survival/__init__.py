"""Survival stage behind notebook 05: Kaplan-Meier, Cox models, nomogram and their evaluation on any clinical table.

``table``: column mapping, cleaning and split (mappings of the known data sets in ``datasets.yaml``);
``analysis``: risk groups, Cox models and :func:`run_survival`; ``evaluation``: Table 4, calibration, decision curves;
``figures``: the chapter's figures; ``export``: display tables, narrative numbers, files and the HTML calculator.
All statistics come from :mod:`hcc_utils.stats`.
"""
from .analysis import (SurvivalResult, km_table, multivariable_cox, risk_groups, run_survival, select_terms,
                       univariable_cox)
from .evaluation import calibration, decision_curve, discrimination_table, eval_time, tdauc_over_time
from .export import (ASSETS, format_table3, format_table4, format_table_s1, glue_values, ground_truth_table,
                     nomogram_html, save_results)
from .figures import (km_curves, nomogram_points, plot_calibration, plot_decision_curves, plot_km, plot_nomogram,
                      plot_tdauc)
from .table import (GSE14520_MAPPING, GSE14520_SPLIT, MISSING_TOKENS, Prepared, gse14520_parameters, gse14520_path,
                    load_input, load_synthetic_table, normalise_mapping, prepare_table, split_cohorts,
                    synthetic_mapping)

__all__ = [
    "MISSING_TOKENS", "GSE14520_MAPPING", "GSE14520_SPLIT", "gse14520_parameters", "gse14520_path",
    "synthetic_mapping", "normalise_mapping", "prepare_table", "Prepared", "split_cohorts", "load_synthetic_table",
    "load_input", "risk_groups", "km_table", "univariable_cox", "multivariable_cox", "select_terms",
    "discrimination_table", "calibration", "decision_curve", "tdauc_over_time", "eval_time", "run_survival",
    "SurvivalResult", "save_results", "ground_truth_table", "format_table3", "format_table4", "format_table_s1",
    "glue_values", "plot_km", "plot_calibration", "plot_decision_curves", "plot_tdauc", "plot_nomogram",
    "nomogram_html", "ASSETS", "km_curves", "nomogram_points",
]
