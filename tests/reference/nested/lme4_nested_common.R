# What the scripts of lme4's nested references share (issue 22): sourced by
# lme4_nested.R (the controls) and by lme4_nested_features.R and lme4_nested_more.R
# (the controls and the fit of a case). Loads lme4 and jsonlite; reads no file.
#
# `controls`: lme4's optimum, both of lme4's BOBYQAs with tolerances far below the
# defaults (lme4_nested.R keeps the fit with the higher log-likelihood; the case's
# `optimizer$used` names it). `case_data(case)`: a case's data as lme4_nested.R
# fitted it (label columns read as text). `fit_case(key, formula)`: lme4's fit of
# the case `key` of the global `ref` (lme4_nested.json's cases) with its control,
# or of another formula on its data (checked to be the case's fit when no formula
# is given). `rows(df)`, `num(x)`: JSON-ready rows and numbers. `prediction_record`,
# `anova_record`: the `predictions` and `anova` entries of the features' JSON.

suppressPackageStartupMessages({
  library(lme4)
  library(jsonlite)
})

controls <- list(
  bobyqa = lmerControl(optimizer = "bobyqa",
                       optCtrl = list(rhoend = 1e-11, maxfun = 1e5)),
  nloptwrap = lmerControl(optimizer = "nloptwrap",
                          optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                                         xtol_rel = 1e-12, ftol_rel = 1e-14,
                                         maxeval = 1e5)))

case_data <- function(case) {
  labels <- unlist(case$label_columns)
  read.csv(file.path("tests/reference/nested", "data", case$data),
           colClasses = setNames(rep("character", length(labels)), labels))
}

fit_case <- function(key, formula = NULL) {
  case <- ref[[key]]
  f <- as.formula(if (is.null(formula)) case$lmer else formula)
  fit <- lmer(f, data = case_data(case), REML = case$reml,
              control = controls[[case$optimizer$used]])
  if (is.null(formula))  # the fit of lme4_nested.json
    stopifnot(abs(as.numeric(logLik(fit)) - case$llf) < 1e-6)
  fit
}

rows <- function(df) lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))
num <- function(x) as.list(unname(as.numeric(x)))

# lme4's predictions of the REML case `key`: predict(fit) (rows 1..20, the sum and
# the sum of squares over all rows), and of the new rows `new_rows(data)` (unseen or
# missing levels get no effect of their factor: allow.new.levels = TRUE) with and
# without the random effects (re.form = NA).
prediction_record <- function(key, new_rows) {
  fit <- fit_case(key)
  fitted_all <- unname(predict(fit))
  nd <- new_rows(case_data(ref[[key]]))
  rownames(nd) <- NULL
  message(sprintf("%-18s predictions: fitted[1] %.10g", key, fitted_all[1]))
  list(
    case = key,
    lmer = ref[[key]]$lmer,
    reml = ref[[key]]$reml,
    llf = as.numeric(logLik(fit)),
    n_fitted = length(fitted_all),
    fitted_first = num(fitted_all[1:20]),       # predict(fit): rows 1..20
    fitted_sum = sum(fitted_all),
    fitted_sum_squares = sum(fitted_all^2),
    newdata = rows(nd),
    predict_new = num(predict(fit, newdata = nd, allow.new.levels = TRUE)),
    predict_fixed = num(predict(fit, newdata = nd, re.form = NA)))
}

# lme4's anova(restricted, full) of the case `key` (the full model) against the
# formula `restricted` on its data: REML fits are refitted by ML, as anova does.
anova_record <- function(key, restricted) {
  full <- fit_case(key)
  small <- fit_case(key, restricted)
  tab <- suppressMessages(anova(small, full))
  message(sprintf("%-18s anova: Chisq %.10g on %d df", key, tab$Chisq[2], tab$Df[2]))
  list(
    case = key,
    reml = ref[[key]]$reml,
    restricted = restricted,
    full = ref[[key]]$lmer,
    # the fits as given (REML fits: their REML log-likelihoods)
    llf_given = list(restricted = as.numeric(logLik(small)),
                     full = as.numeric(logLik(full))),
    # anova's table, restricted model first (lme4 orders by npar)
    npar = num(tab$npar), AIC = num(tab$AIC), BIC = num(tab$BIC),
    logLik = num(tab$logLik), deviance = num(tab$deviance),
    Chisq = num(tab$Chisq), Df = num(tab$Df), p_value = num(tab[["Pr(>Chisq)"]]))
}
