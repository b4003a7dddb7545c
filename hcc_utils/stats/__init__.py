"""Clinical statistics for the book, verified against R on public data (tests/r/).

Public API (contract)
------------------------------
roc_auc_ci(y, score, level=0.95)              -> .auc .lower .upper (.se)      DeLong, as pROC ci.auc
delong_test(y, score_a, score_b)              -> .auc_a .auc_b .z .p           paired, as pROC roc.test
youden_threshold(y, score)                    -> float                         pROC coords "best" (midpoints)
classification_metrics(y, score, threshold)   -> .accuracy .sensitivity .specificity (.ppv .npv)
km_median(time, event, level=0.95)            -> .median .lower .upper         R survfit (log CI)
logrank(time, event, group)                   -> .chisq .p
cox_table(df, duration_col, event_col, covariates) -> DataFrame coef, hr, hr_lower, hr_upper, p (Efron ties)
harrell_c(time, event, risk)                  -> .c .se                        R concordance()
time_dependent_auc(time, event, marker, t)    -> .auc .se .lower .upper        IPCW KM weights, riskRegression Score
table_one(df, group, normal, skewed, categorical) -> DataFrame (cells, p, test)
net_benefit(y, prob, thresholds)              -> DataFrame threshold, model, treat_all, treat_none

Notebook helpers
----------------
cox_univariable_screen, cox_multivariable (p < threshold), stepwise_aic (R step, both directions)   cox_models.py
compare_c_index (R concordance(fit1, fit2) IJ covariance, or seeded paired bootstrap)               compare.py
compare_td_auc (influence functions, riskRegression Score contrasts), bootstrap_c_index_ci          compare.py
bootstrap_auc_ci, logistic_calibration_curve                                                         roc.py
survival_net_benefit (decision curve at time t, KM among the treated)                                decision.py
Nomogram.from_cox / from_coefficients / predict / to_dict (rms scaling), cox_baseline_survival         nomogram.py
calibration_from_predictions (external predictions, no optimism)                                    calibration.py
calibration_at_time (KM observed vs predicted by group, optimism as rms calibrate(cmethod="KM"))   calibration.py
seeded_bootstrap (identical results for any n_jobs)                                                 bootstrap.py

Verification against R (tests/r/make_references.R -> tests/r/references.json; largest |difference| measured)
-------------------------------------------------------------------------------------------------------------
roc_auc_ci, delong_test, youden_threshold, classification_metrics  pROC 1.18 on aSAH       own code     <= 5e-15
km_median (survfit log CI, quantile.survfit midpoint rule)         survival 3.5 on lung   own code     0 (exact)
logrank                                                            survdiff               statsmodels  4e-14
cox_table (Efron)                                                  coxph                  statsmodels  1.5e-9
harrell_c .c / .se                                                 concordance()          own code     2e-16 / 4e-17
time_dependent_auc .auc / .se                                      riskRegression Score   own code     4e-16 / 3e-8
    (pbc, cases T <= t; the censoring KM lets events leave the risk set before tied censorings, as prodlim;
     scikit-survival's cumulative_dynamic_auc differs by ~1e-5 there; timeROC would count cases as T < t)
compare_td_auc (Score contrasts) / compare_c_index (concordance(fit1, fit2))                    3e-10 / 1e-17
table_one p: t.test(var.equal) / wilcox.test(exact=FALSE) / chisq.test(correct=FALSE) / fisher.test
                                                                   pbc by trt   scipy + own Fisher  <= 2e-14
stepwise_aic (step, both)                                          lung                         AIC 4e-12, same terms
Nomogram points / lp axis                                          rms 6.5 nomogram              4e-13
Nomogram survival-axis ticks                                       rms interpolates on a grid    6e-5 points
cox_baseline_survival                                              survfit.coxph (Efron)         4e-11
calibration_at_time KM / mean predicted                            rms calibrate(cmethod="KM")   6e-16 / 2.5e-5
    (cph stops at eps=1e-4, hence the 2.5e-5; bootstrap optimism: seeded here, R's draws differ)
net_benefit / survival_net_benefit                                 dcurves 1.1.7 (Python)       1e-12 / 1e-9
logistic_calibration_curve intercept / slope / Brier               rms val.prob (statsmodels GLM) < 1e-6

Each module's docstring says which library or own code is behind each function and why.
No torch imports here.
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
