# lme4's answers for the shapes lme4_nested_features.R left out (issue 22): so that
# every results feature is checked against lme4 on each of the five new shapes
# (egsingle, sim_slopes2, sim_blocks, sim_diag, sim_three).
#
#   Rscript tests/reference/nested/lme4_nested_more.R   (from the repository root)
#   Rscript tests/reference/nested/lme4_nested_more.R egsingle_reml ...  (only these
#   profiles; the others are kept as the JSON holds them: egsingle's takes most of
#   the run's 15-40 minutes)
#
# Reads lme4_nested.json and data/ (lme4_nested.R's) and writes
# tests/reference/nested/lme4_nested_more.json, in the layout of
# lme4_nested_features.json's sections:
#   predictions  sim_diag_reml (the one shape lme4_nested_features.R did not predict)
#   anova        sim_blocks_reml (against `(x | g) + (0 + z | g)`) and sim_diag_reml
#                (against `(x || g)`): lme4 refits both by ML
#   profile      egsingle_reml, sim_blocks_reml, sim_diag_reml, sim_three_reml:
#                confint(profile(fit)) on lme4's default grid (`lower`, `upper`) and on
#                a grid 4 times finer (`fine_lower`, `fine_upper`, delta.cutoff = 1/32):
#                their difference is the precision of the reference.
# Each fit is the case's, with the control that gave its numbers (optimizer$used).
# Made with Debian's R 4.2.2, r-cran-lme4 1.1-31.
here <- "tests/reference/nested"
# lme4 and jsonlite; controls, case_data, fit_case (lme4's fit of a case with the
# control that gave its numbers), rows, num, prediction_record, anova_record
source(file.path(here, "lme4_nested_common.R"))
ref <- fromJSON(file.path(here, "lme4_nested.json"), simplifyVector = FALSE)$cases

# ---------------------------------------------------------------- predictions
predictions <- list(sim_diag_reml = prediction_record("sim_diag_reml", function(d) {
  extra <- data.frame(g = c("g01", "g99", "g02"), h = c("h9", "h1", NA),
                      x = c(0.3, -1.2, 0.7), y = NA_real_, stringsAsFactors = FALSE)
  rbind(d[1:4, ], extra)
}))

# ---------------------------------------------------------------- anova
comparisons <- list(
  sim_blocks_reml = "y ~ x + z + w + (x | g) + (0 + z | g)",
  sim_diag_reml = "y ~ x + (x || g)")
anovas <- list()
for (key in names(comparisons))
  anovas[[key]] <- anova_record(key, comparisons[[key]])

# ---------------------------------------------------------------- profile intervals
all_profiled <- c("sim_diag_reml", "sim_blocks_reml", "sim_three_reml", "egsingle_reml")
profiled <- commandArgs(trailingOnly = TRUE)
profiles <- list()
if (length(profiled) == 0) {
  profiled <- all_profiled
} else {  # the profiles not asked for, as the JSON holds them
  kept <- fromJSON(file.path(here, "lme4_nested_more.json"), simplifyVector = FALSE)$profile
  for (key in setdiff(intersect(all_profiled, names(kept)), profiled))
    profiles[[key]] <- kept[[key]]
}
for (key in profiled) {
  fit <- fit_case(key)
  t0 <- proc.time()[["elapsed"]]
  ci <- confint(profile(fit, signames = FALSE), level = 0.95)
  ci_fine <- confint(profile(fit, delta.cutoff = 1 / 32, signames = FALSE), level = 0.95)
  ml <- refitML(fit)
  profiles[[key]] <- list(
    case = key, lmer = ref[[key]]$lmer, reml = ref[[key]]$reml,
    parameter = I(rownames(ci)),
    lower = num(ci[, 1]), upper = num(ci[, 2]),
    fine_lower = num(ci_fine[, 1]), fine_upper = num(ci_fine[, 2]),
    ml_llf = as.numeric(logLik(ml)),
    ml_estimate = num(c(lme4:::Cv_to_Sv(getME(ml, "theta"), lengths(ml@cnms), sigma(ml)),
                        fixef(ml))))
  message(sprintf("%-18s profile: %d parameters, %.1f s", key, nrow(ci),
                  proc.time()[["elapsed"]] - t0))
}

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  Matrix = as.character(packageVersion("Matrix"))),
  predictions = predictions, anova = anovas,
  profile = profiles[intersect(all_profiled, names(profiles))])
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                  na = "null"),
           file.path(here, "lme4_nested_more.json"))
