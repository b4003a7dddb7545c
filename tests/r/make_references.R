#!/usr/bin/env Rscript
# Reference values for tests/test_stats_*.py, computed with R on public data sets that ship with R packages.
# Run from the repository root:  Rscript tests/r/make_references.R
# Writes tests/r/data/*.csv (the data sets) and tests/r/references.json (the values). R is not needed to run the
# Python tests; rerun this script only to regenerate the references.
suppressPackageStartupMessages({
  library(pROC); library(survival); library(riskRegression); library(prodlim); library(rms); library(jsonlite)
})
out_dir <- "tests/r"
dat_dir <- file.path(out_dir, "data")
dir.create(dat_dir, showWarnings = FALSE, recursive = TRUE)
wcsv <- function(df, name) write.csv(df, file.path(dat_dir, name), row.names = FALSE)
ref <- list()
ref$versions <- list(R = R.version.string, pROC = as.character(packageVersion("pROC")),
                     survival = as.character(packageVersion("survival")),
                     riskRegression = as.character(packageVersion("riskRegression")),
                     rms = as.character(packageVersion("rms")))

# ---------------------------------------------------------------- pROC: aSAH (DeLong CI, paired test, Youden)
data(aSAH)
asah <- data.frame(outcome = as.character(aSAH$outcome), poor = as.integer(aSAH$outcome == "Poor"),
                   gender = as.character(aSAH$gender), age = aSAH$age, wfns = as.integer(aSAH$wfns),
                   s100b = aSAH$s100b, ndka = aSAH$ndka)
wcsv(asah, "aSAH.csv")
rocs <- lapply(c("s100b", "ndka", "wfns", "age"), function(v)
  roc(asah$outcome, asah[[v]], levels = c("Good", "Poor"), direction = "<", quiet = TRUE))
names(rocs) <- c("s100b", "ndka", "wfns", "age")
ref$asah_auc <- lapply(rocs, function(r) {
  ci <- ci.auc(r, method = "delong", conf.level = 0.95)
  ci90 <- ci.auc(r, method = "delong", conf.level = 0.90)
  best <- coords(r, "best", best.method = "youden", ret = c("threshold", "sensitivity", "specificity"),
                 transpose = FALSE)
  list(auc = as.numeric(ci[2]), lower = ci[1], upper = ci[3], lower90 = ci90[1], upper90 = ci90[3],
       var = var(r, method = "delong"),
       best_thresholds = best$threshold, best_sens = best$sensitivity, best_spec = best$specificity)
})
pairs <- list(c("s100b", "ndka"), c("s100b", "wfns"), c("ndka", "wfns"), c("wfns", "age"))
ref$asah_test <- lapply(pairs, function(p) {
  tt <- roc.test(rocs[[p[1]]], rocs[[p[2]]], method = "delong", paired = TRUE)
  list(a = p[1], b = p[2], z = unname(tt$statistic), p = tt$p.value, auc_a = unname(tt$estimate[1]),
       auc_b = unname(tt$estimate[2]))
})
# metrics at a fixed threshold (pROC: case when predictor >= threshold for direction "<")
cm <- coords(rocs$s100b, 0.205, input = "threshold", ret = c("accuracy", "sensitivity", "specificity", "ppv", "npv"),
             transpose = FALSE)
ref$asah_metrics_s100b_0.205 <- as.list(cm)

# logistic calibration (rms val.prob) of an apparent logistic model; the probabilities go to aSAH_prob.csv
gl <- glm(poor ~ s100b + age + gender, data = asah, family = binomial)
prob <- unname(fitted(gl))
write.csv(format(data.frame(poor = asah$poor, prob = prob), digits = 17), file.path(dat_dir, "aSAH_prob.csv"),
          row.names = FALSE, quote = FALSE)
vp <- val.prob(prob, asah$poor, pl = FALSE)
# a deliberately miscalibrated version: shrunk logit
prob2 <- plogis(0.5 * qlogis(prob) - 0.3)
vp2 <- val.prob(prob2, asah$poor, pl = FALSE)
ref$val_prob <- list(intercept = unname(vp["Intercept"]), slope = unname(vp["Slope"]), brier = unname(vp["Brier"]),
                     intercept2 = unname(vp2["Intercept"]), slope2 = unname(vp2["Slope"]),
                     brier2 = unname(vp2["Brier"]),
                     citl2 = unname(coef(glm(asah$poor ~ offset(qlogis(prob2)), family = binomial))[1]))

# ---------------------------------------------------------------- survival: lung (KM, log-rank, Cox, concordance)
lung2 <- data.frame(time = lung$time, event = as.integer(lung$status == 2), age = lung$age,
                    sex = ifelse(lung$sex == 1, "male", "female"), ph_ecog = lung$ph.ecog,
                    ph_karno = lung$ph.karno, wt_loss = lung$wt.loss, meal_cal = lung$meal.cal)
wcsv(lung2, "lung.csv")
km <- survfit(Surv(time, event) ~ 1, data = lung2)
q <- quantile(km, 0.5)
ref$lung_km <- list(median = unname(q$quantile), lower = unname(q$lower), upper = unname(q$upper))
km90 <- survfit(Surv(time, event) ~ 1, data = lung2, conf.int = 0.90)
q <- quantile(km90, 0.5)
ref$lung_km90 <- list(median = unname(q$quantile), lower = unname(q$lower), upper = unname(q$upper))
kms <- survfit(Surv(time, event) ~ sex, data = lung2)
qs <- quantile(kms, 0.5)
ref$lung_km_by_sex <- list(strata = names(kms$strata), median = unname(qs$quantile[, 1]),
                           lower = unname(qs$lower[, 1]), upper = unname(qs$upper[, 1]))
# small sets with ties and S(t) exactly 0.5 (quantile.survfit midpoint rule)
tiny <- list(a = list(time = c(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), event = rep(1, 10)),
             b = list(time = c(1, 1, 2, 2, 3, 4, 4, 5, 6, 7, 8, 8), event = c(1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 1)),
             c = list(time = c(2, 2, 3, 5, 5, 5, 8, 9, 9, 12), event = c(1, 1, 0, 1, 0, 1, 1, 0, 1, 0)))
ref$tiny_km <- lapply(tiny, function(d) {
  f <- survfit(Surv(d$time, d$event) ~ 1)
  q <- quantile(f, 0.5)
  na2null <- function(x) if (is.na(x)) "NA" else unname(x)
  list(time = d$time, event = d$event, median = na2null(q$quantile), lower = na2null(q$lower), upper = na2null(q$upper))
})
sd1 <- survdiff(Surv(time, event) ~ sex, data = lung2)
ref$lung_logrank_sex <- list(chisq = sd1$chisq, p = pchisq(sd1$chisq, 1, lower.tail = FALSE))
l3 <- subset(lung2, !is.na(ph_ecog) & ph_ecog < 3)
sd2 <- survdiff(Surv(time, event) ~ ph_ecog, data = l3)
ref$lung_logrank_ecog <- list(chisq = sd2$chisq, p = pchisq(sd2$chisq, 2, lower.tail = FALSE))

lc <- subset(lung2, !is.na(ph_ecog))
fit <- coxph(Surv(time, event) ~ age + sex + ph_ecog, data = lc, ties = "efron")
s <- summary(fit)
ref$lung_cox <- list(covariate = names(coef(fit)), coef = unname(coef(fit)), se = unname(sqrt(diag(vcov(fit)))),
                     hr = unname(s$conf.int[, 1]), hr_lower = unname(s$conf.int[, 3]),
                     hr_upper = unname(s$conf.int[, 4]), p = unname(s$coefficients[, 5]), loglik = fit$loglik[2])
lc$ecog_f <- factor(lc$ph_ecog)
fit2 <- coxph(Surv(time, event) ~ age + sex + ecog_f, data = lc, ties = "efron")
s2 <- summary(fit2)
ref$lung_cox_factor <- list(covariate = names(coef(fit2)), coef = unname(coef(fit2)),
                            hr_lower = unname(s2$conf.int[, 3]), hr_upper = unname(s2$conf.int[, 4]),
                            p = unname(s2$coefficients[, 5]))
cc <- concordance(fit)
ref$lung_concordance_lp <- list(c = unname(cc$concordance), se = sqrt(unname(cc$var)))
fitb <- coxph(Surv(time, event) ~ age + sex, data = lc, ties = "efron")
ccab <- concordance(fit, fitb)
ref$lung_cox_baseline <- list(t = c(180, 365, 730), surv = summary(survfit(fit), times = c(180, 365, 730))$surv,
                              center = sum(colMeans(model.matrix(fit)) * coef(fit)))
ref$lung_concordance_pair <- list(c = unname(ccab$concordance), var = unname(ccab$var),
                                  diff = unname(ccab$concordance[1] - ccab$concordance[2]),
                                  se_diff = sqrt(unname(ccab$var[1, 1] + ccab$var[2, 2] - 2 * ccab$var[1, 2])))
lp <- data.frame(time = lc$time, event = lc$event, lp = unname(fit$linear.predictors),
                 lp_b = unname(fitb$linear.predictors), ph_ecog = lc$ph_ecog, age = lc$age)
write.csv(format(lp, digits = 17), file.path(dat_dir, "lung_lp.csv"), row.names = FALSE, quote = FALSE)
cc2 <- concordance(Surv(time, event) ~ ph_ecog, data = lc, reverse = TRUE)   # many tied risks
ref$lung_concordance_ecog <- list(c = unname(cc2$concordance), se = sqrt(unname(cc2$var)),
                                  count = as.list(unclass(cc2$count)))
cc3 <- concordance(Surv(time, event) ~ age, data = lc, reverse = TRUE)
ref$lung_concordance_age <- list(c = unname(cc3$concordance), se = sqrt(unname(cc3$var)))

# stepwise AIC in both directions (R step) on complete cases
lcc <- na.omit(lung2)
full0 <- coxph(Surv(time, event) ~ age + sex + ph_ecog + ph_karno + wt_loss + meal_cal, data = lcc)
st <- step(full0, direction = "both", trace = 0)
ref$lung_step <- list(selected = attr(terms(st), "term.labels"), aic = extractAIC(st)[2], n = nrow(lcc))

# ---------------------------------------------------------------- pbc: time-dependent AUC (riskRegression Score)
pb <- pbc[1:312, c("time", "status", "age", "bili", "albumin", "protime", "edema", "trt", "sex", "stage",
                   "ascites", "chol", "hepato")]
pb$event <- as.integer(pb$status == 2)        # death; transplant counts as censored
wcsv(pb, "pbc.csv")
pbc_c <- pb[complete.cases(pb[, c("bili", "albumin", "age", "protime")]), ]
pbc_c$marker <- log(pbc_c$bili) - 2 * log(pbc_c$albumin) + 0.03 * pbc_c$age
ev_times <- sort(unique(pbc_c$time[pbc_c$event == 1]))
tdauc <- list()
for (tt in c(1000, 2000, ev_times[40], 3000)) {
  for (mk in c("marker", "bili", "edema")) {
    sc <- Score(list(m = plogis(pbc_c[[mk]] - mean(pbc_c[[mk]]))), formula = Hist(time, event) ~ 1, data = pbc_c,
                times = tt, metrics = "auc", cens.model = "km", se.fit = TRUE, conservative = FALSE,
                null.model = FALSE, summary = NULL, plots = NULL)
    a <- sc$AUC$score
    tdauc[[length(tdauc) + 1]] <- list(t = tt, marker = mk, auc = a$AUC, se = a$se, lower = a$lower,
                                       upper = a$upper, event_at_t = any(pbc_c$time == tt & pbc_c$event == 1))
  }
}
ref$pbc_tdauc <- tdauc
# paired comparison of two markers (riskRegression contrasts: delta AUC, se, p)
tdcmp <- list()
for (tt in c(1000, 2000)) {
  sc <- Score(list(a = plogis(pbc_c$marker - mean(pbc_c$marker)), b = plogis(pbc_c$bili - mean(pbc_c$bili))),
              formula = Hist(time, event) ~ 1, data = pbc_c, times = tt, metrics = "auc", cens.model = "km",
              se.fit = TRUE, conservative = FALSE, null.model = FALSE, summary = NULL, plots = NULL)
  ct <- as.data.frame(sc$AUC$contrasts)
  tdcmp[[length(tdcmp) + 1]] <- list(t = tt, model = ct$model, reference = ct$reference, delta = ct$delta.AUC,
                                     se = ct$se, p = ct$p)
}
ref$pbc_tdauc_compare <- tdcmp
ref$pbc_tdauc_n <- nrow(pbc_c)

# ---------------------------------------------------------------- Table 1 tests on pbc by treatment arm
g <- factor(pb$trt)
tt1 <- function(v) t.test(pb[[v]] ~ g, var.equal = TRUE)$p.value
wt1 <- function(v) suppressWarnings(wilcox.test(pb[[v]] ~ g, exact = FALSE, correct = TRUE)$p.value)
ch1 <- function(v) suppressWarnings(chisq.test(table(pb[[v]], g), correct = FALSE)$p.value)
fi1 <- function(v) fisher.test(table(pb[[v]], g))$p.value
expmin <- function(v) min(suppressWarnings(chisq.test(table(pb[[v]], g), correct = FALSE)$expected))
q7 <- function(x) unname(quantile(x, c(0.25, 0.5, 0.75), na.rm = TRUE, type = 7))
ref$pbc_table1 <- list(
  normal = lapply(setNames(c("age", "albumin", "protime"), c("age", "albumin", "protime")), function(v)
    list(p = tt1(v), mean = unname(tapply(pb[[v]], g, mean, na.rm = TRUE)),
         sd = unname(tapply(pb[[v]], g, sd, na.rm = TRUE)))),
  skewed = lapply(setNames(c("bili", "chol"), c("bili", "chol")), function(v)
    list(p = wt1(v), q1 = q7(pb[[v]][g == 1]), q2 = q7(pb[[v]][g == 2]))),
  categorical = lapply(setNames(c("sex", "stage", "edema", "ascites", "hepato"),
                                c("sex", "stage", "edema", "ascites", "hepato")), function(v)
    list(chisq_p = ch1(v), fisher_p = fi1(v), min_expected = expmin(v),
         counts = unname(unclass(as.matrix(table(pb[[v]], g)))))))
# extra Fisher R x C checks
ft <- list(matrix(c(3, 1, 2, 1, 5, 0), nrow = 2, byrow = TRUE), matrix(c(2, 7, 3, 8, 1, 4, 0, 6, 5), nrow = 3),
           matrix(c(10, 2, 3, 15), nrow = 2), matrix(c(1, 9, 4, 2, 0, 3, 6, 1, 2, 2, 5, 3), nrow = 3),
           matrix(c(100, 40, 8, 2, 110, 35, 3, 2), nrow = 2, byrow = TRUE),
           matrix(c(60, 30, 10, 4, 1, 70, 25, 6, 2, 2), nrow = 2, byrow = TRUE),
           matrix(c(20, 5, 2, 25, 3, 1, 30, 4, 0), nrow = 3, byrow = TRUE))
ref$fisher <- lapply(ft, function(m) list(table = unname(m), p = fisher.test(m)$p.value))

# ---------------------------------------------------------------- rms nomogram (cph on lung, S(365))
dd <- datadist(lc); options(datadist = "dd")
lc$sex_f <- factor(lc$sex, levels = c("female", "male"))
dd <- datadist(lc); options(datadist = "dd")
cf <- cph(Surv(time, event) ~ age + sex_f + ph_ecog, data = lc, x = TRUE, y = TRUE, surv = TRUE, time.inc = 365)
surv_fun <- Survival(cf)
nom <- nomogram(cf, fun = function(x) surv_fun(365, x), funlabel = "S(365)", fun.at = c(0.1, 0.3, 0.5, 0.7),
                lp = TRUE, age = seq(40, 80, by = 10), ph_ecog = 0:3)
ax <- list()
for (v in c("age", "sex_f", "ph_ecog")) ax[[v]] <- list(values = as.character(nom[[v]][[v]]), points = nom[[v]]$points)
ref$nomogram <- list(coef = as.list(coef(cf)), center = cf$center, axes = ax,
                     total_points_for_lp = list(lp = nom$lp$x.real, points = nom$lp$x),
                     fun_at = list(surv = c(0.1, 0.3, 0.5, 0.7), points = nom[["S(365)"]]$x),
                     surv365_at_lp = list(lp = c(-0.5, 0, 0.5), surv = surv_fun(365, c(-0.5, 0, 0.5))),
                     baseline_surv365 = unname(summary(survfit(cf), times = 365)$surv),
                     info = attr(nom, "info")$sc)

# calibrate(cmethod="KM"): the apparent part (groups, KM, mean predicted) is deterministic; the bootstrap is not
set.seed(20261127)
cal <- calibrate(cf, cmethod = "KM", u = 365, m = 50, B = 40)
ref$calibrate_km <- list(u = 365, m = 50, B = 40, mean_predicted = unname(cal[, "mean.predicted"]),
                         KM = unname(cal[, "KM"]), KM_corrected = unname(cal[, "KM.corrected"]),
                         std_err = unname(cal[, "std.err"]), n = unname(cal[, "n"]))

writeLines(toJSON(ref, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "string"),
           file.path(out_dir, "references.json"))
cat("wrote", file.path(out_dir, "references.json"), "\n")
