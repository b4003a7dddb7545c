#!/usr/bin/env Rscript
# Score (Rao) test references for the clinical screen (tests/test_models.py). Run from the repository root:
#   Rscript tests/r/make_screen_references.R
# Writes tests/r/screen_references.json. R is not needed to run the Python tests.
suppressPackageStartupMessages(library(jsonlite))
asah <- read.csv("tests/r/data/aSAH.csv")
asah$gender_male <- as.integer(asah$gender == "Male")
rao <- function(v) {
  fit <- glm(reformulate(v, "poor"), data = asah, family = binomial)
  a <- anova(fit, test = "Rao")
  list(statistic = a$Rao[2], p = a$`Pr(>Chi)`[2])
}
cols <- c("age", "wfns", "s100b", "ndka", "gender_male")
ref <- list(versions = list(R = R.version.string), data = "aSAH.csv (pROC), outcome poor",
            rao = setNames(lapply(cols, rao), cols))
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/r/screen_references.json")
