# Reference numbers for dlmm's precision weights (lme4's `weights=`), made
# with lme4 and lmerTest.
#
#   Rscript tests/reference/weights/lme4_weights.R   (from the repository root)
#
# Reads tests/reference/data/{sleepstudy,pastes,penicillin}.csv, adds a column
# `w` of seeded Gamma(2, 2) weights rounded to 4 decimals (so the CSV holds
# them exactly), writes those CSVs beside this script and the fits to
# lme4_weights.json. The tests read the CSVs and the JSON; they never run R.
# lme4's profile intervals of a weighted fit are kept for the variance parameters
# only in the tests: its fixed-effect rows are too narrow (lme4 issue #192: the
# profile's deviance leaves out the weights' log-determinant).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})
src <- "tests/reference/data"
here <- "tests/reference/weights"
ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-4, rhoend = 2e-11, maxfun = 1e5))

with_weights <- function(name, seed) {
  d <- read.csv(file.path(src, paste0(name, ".csv")), colClasses = "character")
  set.seed(seed)
  d$w <- sprintf("%.4f", round(rgamma(nrow(d), shape = 2, rate = 2), 4) + 0.05)
  write.csv(d, file.path(here, paste0(name, "_w.csv")), row.names = FALSE)
  d$w <- as.numeric(d$w)
  d
}

sleep <- with_weights("sleepstudy", 26)
sleep$Reaction <- as.numeric(sleep$Reaction); sleep$Days <- as.numeric(sleep$Days)
pastes <- with_weights("pastes", 27)
pastes$strength <- as.numeric(pastes$strength)
penicillin <- with_weights("penicillin", 28)
penicillin$diameter <- as.numeric(penicillin$diameter)

varcorr_rows <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  lapply(seq_len(nrow(vc)), function(i) list(
    grp = vc$grp[i], var1 = ifelse(is.na(vc$var1[i]), "", vc$var1[i]),
    var2 = ifelse(is.na(vc$var2[i]), "", vc$var2[i]), vcov = vc$vcov[i],
    sdcor = vc$sdcor[i]))
}

one_fit <- function(formula, data, reml, profile = FALSE) {
  fit <- lmer(formula, data, weights = w, REML = reml, control = ctrl)
  co <- summary(fit)$coefficients
  out <- list(
    logLik = as.numeric(logLik(fit)), sum_log_w = sum(log(data$w)),
    fixef = as.list(fixef(fit)), se = as.list(setNames(co[, "Std. Error"], rownames(co))),
    df = as.list(setNames(co[, "df"], rownames(co))),
    theta = as.numeric(getME(fit, "theta")), sigma = sigma(fit),
    varcorr = varcorr_rows(fit), nobs = nobs(fit),
    fitted_head = as.numeric(head(fitted(fit), 5)),
    predict_fixed_head = as.numeric(head(predict(fit, re.form = NA), 5)))
  if (profile) {
    ci <- suppressWarnings(suppressMessages(confint(fit, method = "profile", oldNames = FALSE)))
    out$profile_ci <- lapply(seq_len(nrow(ci)), function(i) list(
      name = rownames(ci)[i], lower = ci[i, 1], upper = ci[i, 2]))
  }
  out
}

cases <- list(
  sleep_slope = list(formula = Reaction ~ Days + (Days | Subject), data = sleep,
                     csv = "sleepstudy_w.csv", profile = TRUE),
  sleep_intercept = list(formula = Reaction ~ Days + (1 | Subject), data = sleep,
                         csv = "sleepstudy_w.csv", profile = FALSE),
  pastes_nested = list(formula = strength ~ 1 + (1 | batch/cask), data = pastes,
                       csv = "pastes_w.csv", profile = FALSE),
  penicillin_crossed = list(formula = diameter ~ 1 + (1 | plate) + (1 | sample),
                            data = penicillin, csv = "penicillin_w.csv", profile = FALSE))

result <- list(lme4_version = as.character(packageVersion("lme4")),
               lmerTest_version = as.character(packageVersion("lmerTest")))
for (name in names(cases)) {
  case <- cases[[name]]
  result[[name]] <- list(
    formula = deparse(case$formula), csv = case$csv,
    REML = one_fit(case$formula, case$data, TRUE, case$profile),
    ML = one_fit(case$formula, case$data, FALSE, case$profile))
}
writeLines(toJSON(result, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "lme4_weights.json"))
