# Reference numbers for precision weights on models of random-effects terms that
# statsmodels' spelling cannot state (dlmm.lmer's TermsMixedLM: the nested and the
# crossed terms engines), made with lme4 and lmerTest.
#
#   Rscript tests/reference/weights/lme4_weights_terms.R   (from the repository root)
#
# Reads tests/reference/nested/data/sim_slopes2.csv (slopes at two nested levels) and
# tests/reference/crossed_terms/data/sim_beside.csv (items with a correlated slope,
# crossed with classes nested in schools), adds a column `w` of seeded Gamma(2, 2) weights rounded to 4
# decimals (plus 0.05, so none is near 0), writes those CSVs beside this script and
# the fits to lme4_weights_terms.json. The tests read the CSVs and the JSON; they never
# run R.
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
  library(jsonlite)
})
here <- "tests/reference/weights"
ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-4, rhoend = 2e-11, maxfun = 1e5))

with_weights <- function(path, out, labels, seed) {
  d <- read.csv(path, colClasses = setNames(rep("character", length(labels)), labels))
  set.seed(seed)
  d$w <- sprintf("%.4f", round(rgamma(nrow(d), shape = 2, rate = 2), 4) + 0.05)
  write.csv(d, file.path(here, out), row.names = FALSE)
  d$w <- as.numeric(d$w)
  d
}

slopes2 <- with_weights("tests/reference/nested/data/sim_slopes2.csv", "sim_slopes2_w.csv",
                        c("g", "h"), 31)
beside <- with_weights("tests/reference/crossed_terms/data/sim_beside.csv", "sim_beside_w.csv",
                       c("item", "school", "class"), 32)

varcorr_rows <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  lapply(seq_len(nrow(vc)), function(i) list(
    grp = vc$grp[i], var1 = ifelse(is.na(vc$var1[i]), "", vc$var1[i]),
    var2 = ifelse(is.na(vc$var2[i]), "", vc$var2[i]), vcov = vc$vcov[i],
    sdcor = vc$sdcor[i]))
}

one_fit <- function(formula, data, reml) {
  fit <- lmer(formula, data, weights = w, REML = reml, control = ctrl)
  co <- summary(fit)$coefficients
  list(
    logLik = as.numeric(logLik(fit)), sum_log_w = sum(log(data$w)),
    fixef = as.list(fixef(fit)), se = as.list(setNames(co[, "Std. Error"], rownames(co))),
    df = as.list(setNames(co[, "df"], rownames(co))),
    theta = as.numeric(getME(fit, "theta")), theta_names = names(getME(fit, "theta")),
    sigma = sigma(fit), varcorr = varcorr_rows(fit), nobs = nobs(fit),
    fitted_head = as.numeric(head(fitted(fit), 5)),
    predict_fixed_head = as.numeric(head(predict(fit, re.form = NA), 5)))
}

cases <- list(
  slopes2_nested = list(formula = y ~ x + (x | g) + (x | g:h), data = slopes2,
                        csv = "sim_slopes2_w.csv", labels = c("g", "h")),
  beside_crossed = list(formula = y ~ x + (1 + x | item) + (1 | school/class),
                        data = beside, csv = "sim_beside_w.csv",
                        labels = c("item", "school", "class")))

result <- list(lme4_version = as.character(packageVersion("lme4")),
               lmerTest_version = as.character(packageVersion("lmerTest")))
for (name in names(cases)) {
  case <- cases[[name]]
  result[[name]] <- list(
    formula = paste(deparse(case$formula), collapse = ""), csv = case$csv,
    labels = case$labels,
    REML = one_fit(case$formula, case$data, TRUE),
    ML = one_fit(case$formula, case$data, FALSE))
}
writeLines(toJSON(result, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           file.path(here, "lme4_weights_terms.json"))
