# lme4's answers to the questions users ask of a fit of nested terms (issue 22):
# predictions, and more sections below, so that tests can compare dlmm's
# TermsResults with lme4 without R.
#
#   Rscript tests/reference/nested/lme4_nested_features.R   (from the repository root)
#
# Reads the data and the cases of lme4_nested.R (tests/reference/nested/data/,
# lme4_nested.json: run that script first) and writes
# tests/reference/nested/lme4_nested_features.json. Each fit is lme4's fit of the
# case with the control that gave the case's reference numbers (its
# `optimizer$used`), so the fits are those of lme4_nested.json. Made with Debian's
# R 4.2.2 and r-cran-lme4 1.1-31; a second run reproduces the file exactly.
here <- "tests/reference/nested"
# lme4 and jsonlite; controls, case_data, fit_case (lme4's fit of a case with the
# control that gave its numbers), rows, num, prediction_record, anova_record
source(file.path(here, "lme4_nested_common.R"))
ref <- fromJSON(file.path(here, "lme4_nested.json"), simplifyVector = FALSE)$cases

# ---------------------------------------------------------------- predictions

# New data for each case: the first 4 rows of the data, then rows whose grouping
# values the fit never saw (or are missing): lme4's predict(allow.new.levels = TRUE)
# gives them no effect for the factors of unseen (or missing) levels.
new_rows <- list(
  egsingle = function(d) {
    extra <- data.frame(
      schoolid = c(d$schoolid[1], "9001", "9002", d$schoolid[1]),
      childid = c("900000001", "900000002", d$childid[1], NA),
      year = c(1.5, -0.5, 2.5, 0.5), math = NA_real_, stringsAsFactors = FALSE)
    rbind(d[1:4, ], extra)
  },
  sim_slopes2 = function(d) {
    extra <- data.frame(g = c("g01", "g99", "g02"), h = c("h9", "h1", NA),
                        x = c(0.3, -1.2, 0.7), y = NA_real_, stringsAsFactors = FALSE)
    rbind(d[1:4, ], extra)
  },
  sim_blocks = function(d) {
    extra <- data.frame(g = c("g99", "g03"), x = c(0.4, -0.3), z = c(-1.1, 0.2),
                        w = c(0.5, 1.3), y = NA_real_, stringsAsFactors = FALSE)
    rbind(d[1:4, ], extra)
  },
  sim_three = function(d) {
    extra <- data.frame(a = c("a01", "a01", "a99"), b = c("b9", "b1", "b1"),
                        c = c("c1", "c9", "c1"), x = c(0.3, -0.8, 1.1), y = NA_real_,
                        stringsAsFactors = FALSE)
    rbind(d[1:4, ], extra)
  })

predictions <- list()
for (name in names(new_rows))
  predictions[[paste0(name, "_reml")]] <- prediction_record(paste0(name, "_reml"),
                                                            new_rows[[name]])

# ---------------------------------------------------------------- anova

# lme4's anova of REML fits (it refits both by ML) and of ML fits: a restricted
# model (fewer random effects) against the case's model.
comparisons <- list(
  egsingle_reml = "math ~ year + (year | childid) + (1 | schoolid)",
  sim_slopes2_reml = "y ~ x + (x | g) + (1 | g:h)",
  sim_three_ml = "y ~ x + (1 | a) + (1 | a:b) + (1 | a:b:c)")

anovas <- list()
for (key in names(comparisons))
  anovas[[key]] <- anova_record(key, comparisons[[key]])

# ---------------------------------------------------------------- profile intervals

# lme4's confint(method = "profile") of the REML fit of sim_slopes2 (lme4 profiles the
# ML deviance: it refits by ML first). confint interpolates the profile by splines;
# `fine` profiles on a grid 8 times finer than lme4's default (delta.cutoff = 1/64),
# so that its intervals are those of the profile itself to about 1e-5; `default` is
# lme4's default grid, for the size of the interpolation error.
profiles <- list()
for (key in c("sim_slopes2_reml")) {
  fit <- fit_case(key)
  ci_fine <- confint(profile(fit, delta.cutoff = 1 / 64, signames = FALSE), level = 0.95)
  ci_default <- confint(profile(fit, signames = FALSE), level = 0.95)
  ml <- refitML(fit)
  profiles[[key]] <- list(
    case = key,
    lmer = ref[[key]]$lmer,
    reml = ref[[key]]$reml,
    parameter = I(rownames(ci_fine)),
    lower = num(ci_fine[, 1]), upper = num(ci_fine[, 2]),
    default_lower = num(ci_default[, 1]), default_upper = num(ci_default[, 2]),
    ml_llf = as.numeric(logLik(ml)),
    ml_estimate = num(c(lme4:::Cv_to_Sv(getME(ml, "theta"), lengths(ml@cnms), sigma(ml)),
                        fixef(ml))))
  message(sprintf("%-18s profile: %d parameters", key, nrow(ci_fine)))
}

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  Matrix = as.character(packageVersion("Matrix"))),
  predictions = predictions,
  anova = anovas,
  profile = profiles)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                  na = "null"),
           file.path(here, "lme4_nested_features.json"))
