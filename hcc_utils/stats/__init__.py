"""Clinical statistics for the book, verified against R on public data (``tests/r/``).

ROC analysis (``roc``), survival and Cox tables (``survival``, ``cox_models``), comparisons of C and tdAUC
(``compare``), calibration (``calibration``), decision curves (``decision``), the nomogram (``nomogram``), Table 1
(``table1``), seeded bootstrap (``bootstrap``) and the p-value format (``format``). Each function's docstring names
its R counterpart; the library choices and the measured differences from R are listed in ``book/method.md``
("The statistics library"). No torch imports here.
"""
from .bootstrap import seeded_bootstrap
from .calibration import CalibrationResult, calibration_at_time, calibration_from_predictions
from .compare import PairedComparison, bootstrap_c_index_ci, compare_c_index, compare_td_auc
from .cox_models import (CoxModel, StepwiseResult, cox_model, cox_multivariable, cox_null_loglik,
                         cox_univariable_screen, stepwise_aic, term_columns, term_frame)
from .decision import net_benefit, survival_net_benefit
from .roc import (bootstrap_auc_ci, classification_metrics, delong_placements, delong_test,
                  logistic_calibration_curve, roc_auc_ci, youden_threshold)
from .format import format_p
from .survival import (cox_design, cox_fit, cox_fit_table, cox_table, harrell_c, harrell_c_influence, kaplan_meier, km_median,
                       logrank, td_auc_influence, time_dependent_auc)
from .nomogram import Nomogram, NomogramAxis, NomogramCalculator, cox_baseline_survival, default_axis_range
from .table1 import chi2_or_fisher, fisher_exact_rxc, table_one

__all__ = [
    "roc_auc_ci", "delong_test", "youden_threshold", "classification_metrics", "km_median", "logrank",
    "cox_table", "harrell_c", "time_dependent_auc", "table_one", "net_benefit",
    # helpers
    "bootstrap_auc_ci", "logistic_calibration_curve", "delong_placements", "kaplan_meier", "cox_design", "cox_fit",
    "harrell_c_influence", "seeded_bootstrap", "PairedComparison", "bootstrap_c_index_ci", "compare_c_index",
    "compare_td_auc", "StepwiseResult", "cox_multivariable", "cox_null_loglik", "cox_univariable_screen",
    "stepwise_aic", "CoxModel", "cox_model", "term_columns", "term_frame", "cox_fit_table", "CalibrationResult",
    "calibration_at_time", "calibration_from_predictions", "Nomogram", "NomogramAxis", "NomogramCalculator",
    "cox_baseline_survival", "default_axis_range", "td_auc_influence", "survival_net_benefit", "fisher_exact_rxc",
    "chi2_or_fisher", "format_p",
]
