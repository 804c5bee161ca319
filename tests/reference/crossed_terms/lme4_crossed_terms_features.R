# lme4's answers to the questions users ask of a fit of crossed terms (issue 23):
# predictions on new data (unseen and missing levels), anova, profile intervals, so
# that tests can compare dlmm's TermsResults with lme4 without R.
#
#   Rscript tests/reference/crossed_terms/lme4_crossed_terms_features.R   (from the repository root)
#
# Reads the data and cases of lme4_crossed_terms.R (run that script first) and writes
# tests/reference/crossed_terms/lme4_crossed_terms_features.json. Each fit is lme4's fit
# of the case with the control that gave the case's reference numbers.
suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

here <- "tests/reference/crossed_terms"
ref <- fromJSON(file.path(here, "lme4_crossed_terms.json"), simplifyVector = FALSE)$cases

controls <- list(
  bobyqa = lmerControl(optimizer = "bobyqa",
                       optCtrl = list(rhoend = 1e-11, maxfun = 1e5)),
  nloptwrap = lmerControl(optimizer = "nloptwrap",
                          optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                                         xtol_rel = 1e-12, ftol_rel = 1e-14,
                                         maxeval = 1e5)))

case_data <- function(case) {
  labels <- unlist(case$label_columns)
  read.csv(file.path(here, "data", case$data),
           colClasses = setNames(rep("character", length(labels)), labels))
}

fit_case <- function(key, formula = NULL) {
  case <- ref[[key]]
  f <- as.formula(if (is.null(formula)) case$lmer else formula)
  fit <- lmer(f, data = case_data(case), REML = case$reml,
              control = controls[[case$optimizer$used]])
  if (is.null(formula))
    stopifnot(abs(as.numeric(logLik(fit)) - case$llf) < 1e-6)
  fit
}

rows <- function(df) lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))
num <- function(x) as.list(unname(as.numeric(x)))

# ---------------------------------------------------------------- predictions

new_rows <- list(
  scotssec = function(d) {
    extra <- data.frame(second = c(d$second[1], "999", "999", NA),
                        primary = c("9999", d$primary[1], "9999", d$primary[2]),
                        verbal = c(3, -7, 12, 0), attain = NA_real_,
                        stringsAsFactors = FALSE)
    rbind(d[1:4, ], extra)
  },
  sim_beside = function(d) {
    extra <- data.frame(item = c("it99", "it1", "it2", NA),
                        school = c("sc01", "sc01", "sc99", "sc02"),
                        class = c("k1", "k9", "k1", "k2"),
                        x = c(0.3, -1.2, 0.7, 0.1), y = NA_real_, stringsAsFactors = FALSE)
    rbind(d[1:4, ], extra)
  },
  kb07 = function(d) {
    extra <- data.frame(subj = c("S99", "S01"), item = c("I01", "I99"),
                        spkr = c(0.5, -0.5), prec = c(-0.5, 0.5), load = c(0.5, 0.5),
                        rt = NA_real_, stringsAsFactors = FALSE)
    rbind(d[1:4, ], extra)
  })

predictions <- list()
for (name in names(new_rows)) {
  key <- paste0(name, "_reml")
  fit <- fit_case(key)
  d <- case_data(ref[[key]])
  fitted_all <- unname(predict(fit))
  nd <- new_rows[[name]](d)
  rownames(nd) <- NULL
  predictions[[key]] <- list(
    case = key, lmer = ref[[key]]$lmer, reml = ref[[key]]$reml,
    llf = as.numeric(logLik(fit)),
    n_fitted = length(fitted_all),
    fitted_sum = sum(fitted_all),
    fitted_sum_squares = sum(fitted_all^2),
    newdata = rows(nd),
    predict_new = num(predict(fit, newdata = nd, allow.new.levels = TRUE)),
    predict_fixed = num(predict(fit, newdata = nd, re.form = NA)))
  message(sprintf("%-18s predictions: fitted[1] %.10g", key, fitted_all[1]))
}

# ---------------------------------------------------------------- anova

comparisons <- list(
  sim_diag_reml = "y ~ x + (1 | subj) + (1 | item)",
  sim_three_ml = "y ~ x + (1 | a) + (1 | b) + (1 | c)",
  scotssec_reml = "attain ~ verbal + (1 | second) + (1 | primary)")

anovas <- list()
for (key in names(comparisons)) {
  full <- fit_case(key)
  small <- fit_case(key, comparisons[[key]])
  tab <- suppressMessages(anova(small, full))
  anovas[[key]] <- list(
    case = key, reml = ref[[key]]$reml,
    restricted = comparisons[[key]], full = ref[[key]]$lmer,
    llf_given = list(restricted = as.numeric(logLik(small)),
                     full = as.numeric(logLik(full))),
    npar = num(tab$npar), AIC = num(tab$AIC), BIC = num(tab$BIC),
    logLik = num(tab$logLik), deviance = num(tab$deviance),
    Chisq = num(tab$Chisq), Df = num(tab$Df), p_value = num(tab[["Pr(>Chisq)"]]))
  message(sprintf("%-18s anova: Chisq %.10g on %d df", key, tab$Chisq[2], tab$Df[2]))
}

# ---------------------------------------------------------------- profile intervals

# confint(method = "profile") of sim_three's REML fit (lme4 profiles the ML deviance);
# `lower`/`upper` from a grid 8 times finer than lme4's default (delta.cutoff = 1/64).
profiles <- list()
for (key in c("sim_three_reml")) {
  fit <- fit_case(key)
  ci_fine <- confint(profile(fit, delta.cutoff = 1 / 64, signames = FALSE), level = 0.95)
  ci_default <- confint(profile(fit, signames = FALSE), level = 0.95)
  ml <- refitML(fit)
  profiles[[key]] <- list(
    case = key, lmer = ref[[key]]$lmer, reml = ref[[key]]$reml,
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
  predictions = predictions, anova = anovas, profile = profiles)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                  na = "null"),
           file.path(here, "lme4_crossed_terms_features.json"))
