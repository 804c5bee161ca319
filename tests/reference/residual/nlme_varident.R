# Reference numbers for dlmm's residual variance per stratum (nlme's varIdent), made
# with nlme from Debian's r-cran-nlme:
#
#   Rscript tests/reference/residual/nlme_varident.R   (from the repository root)
#
# Two data sets: nlme's Orthodont (distance ~ age, random = ~ age | Subject, a residual
# variance per Sex), and a seeded simulation of 150 groups of 1-12 rows whose rows fall
# in three strata at random (residual sds 1, 0.5, 2). The CSVs are written beside this
# script, the fits (REML and ML) to nlme_varident.json. The tests read the CSVs and the
# JSON; they never run R.
#
# The standard error of log δ is given twice: nlme's `apVar` (numerical derivatives of
# its own; about 1% off on the simulated design) and `se_log_delta_profile`, from the
# curvature of nlme's profile log-likelihood in log δ (fits with the variance ratios
# held, varFixed, central differences of step 1e-3), which the tests use.
suppressMessages({library(nlme); library(jsonlite)})
here <- "tests/reference/residual"

data(Orthodont)
orth <- data.frame(distance = Orthodont$distance, age = Orthodont$age,
                   Subject = as.character(Orthodont$Subject),
                   Sex = as.character(Orthodont$Sex))
write.csv(orth, file.path(here, "orthodont.csv"), row.names = FALSE)

set.seed(26)
sizes <- sample(1:12, 150, replace = TRUE)
g <- rep(sprintf("g%03d", 1:150), sizes)
n <- length(g)
x <- round(runif(n, -2, 2), 3)
stratum <- sample(c("a", "b", "c"), n, replace = TRUE, prob = c(0.5, 0.3, 0.2))
b0 <- rnorm(150, 0, 1.2)[as.integer(factor(g))]
b1 <- rnorm(150, 0, 0.6)[as.integer(factor(g))]
sd_s <- c(a = 1, b = 0.5, c = 2)[stratum]
y <- round(2 + 0.7 * x + b0 + b1 * x + rnorm(n, 0, sd_s), 4)
sim <- data.frame(y = y, x = x, g = g, s = stratum)
write.csv(sim, file.path(here, "sim_strata.csv"), row.names = FALSE)

profile_se <- function(cs, method, vs) {
  levels_all <- names(coef(vs, unconstrained = FALSE, allCoef = TRUE))
  e0 <- log(coef(vs, unconstrained = FALSE))
  lp <- function(eta) {
    dd <- cs$data
    r <- setNames(c(1, exp(eta)), c(setdiff(levels_all, names(eta)), names(eta)))
    dd$.v <- r[as.character(dd$.s)]^2
    f <- lme(cs$formula, random = cs$random, data = dd, method = method,
             weights = varFixed(~ .v),
             control = lmeControl(msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12))
    as.numeric(logLik(f))
  }
  h <- 1e-3
  k <- length(e0)
  H <- matrix(0, k, k)
  for (i in 1:k) for (j in 1:k) {
    ei <- replace(numeric(k), i, h)
    ej <- replace(numeric(k), j, h)
    H[i, j] <- (lp(e0 + ei + ej) - lp(e0 + ei - ej) - lp(e0 - ei + ej) +
                lp(e0 - ei - ej)) / (4 * h * h)
  }
  as.list(setNames(sqrt(diag(solve(-H))), names(e0)))
}

fit_case <- function(fit) {
  vs <- coef(fit$modelStruct$varStruct, unconstrained = FALSE, allCoef = TRUE)
  ap <- fit$apVar
  rows <- grep("^varStruct", rownames(ap))
  re <- ranef(fit)
  list(
    logLik = as.numeric(logLik(fit)),
    fixef = as.list(fixef(fit)),
    se = as.list(summary(fit)$tTable[, "Std.Error"]),
    sigma = fit$sigma,
    delta = as.list(vs),
    se_log_delta = as.list(setNames(sqrt(diag(ap)[rows]), names(vs)[-1])),
    cov_re = unname(matrix(as.numeric(getVarCov(fit)), nrow = nrow(getVarCov(fit)))),
    ranef_groups = rownames(re),
    ranef = unname(as.matrix(re))
  )
}

cases <- list(
  orthodont = list(data = orth, formula = distance ~ age, random = ~ age | Subject,
                   strata = ~ 1 | Sex),
  sim_strata = list(data = sim, formula = y ~ x, random = ~ x | g, strata = ~ 1 | s)
)
out <- lapply(cases, function(cs) {
  cs$data$.s <- factor(cs$data[[all.vars(cs$strata)[1]]])
  res <- list()
  for (method in c("REML", "ML")) {
    fit <- lme(cs$formula, random = cs$random, data = cs$data, method = method,
               weights = varIdent(form = ~ 1 | .s),
               control = lmeControl(msMaxIter = 500, tolerance = 1e-10, msTol = 1e-12))
    res[[method]] <- fit_case(fit)
    res[[method]]$se_log_delta_profile <- profile_se(cs, method, fit$modelStruct$varStruct)
  }
  res
})
out$versions <- list(R = R.version.string, nlme = as.character(packageVersion("nlme")))
write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE),
      file.path(here, "nlme_varident.json"))
