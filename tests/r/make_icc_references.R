#!/usr/bin/env Rscript
# ICC reference values for tests/test_radiomics.py (psych::ICC). Run from the repository root:
#   Rscript tests/r/make_icc_references.R
# Writes tests/r/icc_references.json. R is not needed to run the Python tests.
suppressPackageStartupMessages({ library(psych); library(jsonlite) })
# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges (the example of ?psych::ICC)
sf <- matrix(c(9, 2, 5, 8,  6, 1, 3, 2,  8, 4, 6, 8,  7, 1, 2, 6,  10, 5, 6, 9,  6, 2, 4, 7),
             ncol = 4, byrow = TRUE)
# a second case: 30 patients x 3 conditions, rater offsets and noise (seeded)
set.seed(2022)
truth <- rnorm(30)
sim <- cbind(truth + rnorm(30, sd = 0.4), truth + 0.8 + rnorm(30, sd = 0.4), 1.3 * truth + rnorm(30, sd = 0.6))
one <- function(m) {
  r <- ICC(m, lmer = FALSE)$results
  list(data = m, ICC1 = r$ICC[1], ICC2 = r$ICC[2], ICC3 = r$ICC[3],
       ICC2_lower = r$`lower bound`[2], ICC2_upper = r$`upper bound`[2],
       ICC3_lower = r$`lower bound`[3], ICC3_upper = r$`upper bound`[3])
}
ref <- list(versions = list(R = R.version.string, psych = as.character(packageVersion("psych"))),
            shrout_fleiss = one(sf), simulated = one(sim))
writeLines(toJSON(ref, digits = NA, auto_unbox = TRUE, matrix = "rowmajor", pretty = TRUE),
           "tests/r/icc_references.json")
