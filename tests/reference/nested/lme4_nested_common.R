# What the scripts of lme4's nested references share (issue 22): sourced by
# lme4_nested.R (the controls) and by lme4_nested_features.R and lme4_nested_more.R
# (the controls and the fit of a case). Defines nothing else; reads nothing.
#
# `controls`: lme4's optimum, both of lme4's BOBYQAs with tolerances far below the
# defaults (lme4_nested.R keeps the fit with the higher log-likelihood; the case's
# `optimizer$used` names it). `case_data(case)`: a case's data as lme4_nested.R
# fitted it (label columns read as text). `fit_case(key, formula)`: lme4's fit of
# the case `key` of the global `ref` (lme4_nested.json's cases) with its control,
# or of another formula on its data (checked to be the case's fit when no formula
# is given). `rows(df)`, `num(x)`: JSON-ready rows and numbers.

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
