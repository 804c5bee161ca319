# Reference numbers for dlmm's AR(1) errors within groups (nlme's corAR1), alone and
# with a residual variance per stratum (varIdent), made with nlme from Debian's
# r-cran-nlme:
#
#   Rscript tests/reference/residual/nlme_ar1.R   (from the repository root)
#
# Three cases: nlme's Ovary (follicles ~ sin(2 pi Time) + cos(2 pi Time), a random
# intercept per Mare, AR(1) in the order of the rows of each mare, `t`); Orthodont with a
# random intercept per Subject, AR(1) over `t` = age / 2 and a residual variance per Sex;
# and a seeded simulation of 120 groups of 3-15 consecutive times with a random
# intercept and slope, rho = 0.5 (its rows written in a shuffled order). The CSVs are
# written beside this script, the fits (REML and ML) to nlme_ar1.json; the tests never
# run R. `se_atanh_rho` and `se_log_delta` are from the curvature of nlme's profile
# log-likelihood (fits with rho and the variance ratios held; central differences of
# step 1e-3 in atanh rho and log delta).
suppressMessages({library(nlme); library(jsonlite)})
here <- "tests/reference/residual"

data(Ovary)
ov <- as.data.frame(Ovary)
ov$Mare <- as.character(ov$Mare)
ov$t <- ave(seq_len(nrow(ov)), ov$Mare, FUN = seq_along)
ovary <- data.frame(follicles = ov$follicles, s1 = sin(2 * pi * ov$Time),
                    c1 = cos(2 * pi * ov$Time), Mare = ov$Mare, t = ov$t)
write.csv(ovary, file.path(here, "ovary.csv"), row.names = FALSE)

orth <- read.csv(file.path(here, "orthodont.csv"))
orth$t <- orth$age / 2

set.seed(27)
sizes <- sample(3:15, 120, replace = TRUE)
g <- rep(sprintf("m%03d", 1:120), sizes)
t <- unlist(lapply(sizes, function(n) seq_len(n) + sample(0:5, 1)))
n <- length(g)
x <- round(rnorm(n), 3)
b0 <- rnorm(120, 0, 1)[as.integer(factor(g))]
b1 <- rnorm(120, 0, 0.4)[as.integer(factor(g))]
e <- unlist(lapply(sizes, function(m) as.numeric(arima.sim(list(ar = 0.5), m, sd = sqrt(0.75)))))
y <- round(1 + 0.3 * x + b0 + b1 * x + e, 4)
sim <- data.frame(y = y, x = x, g = g, t = t)[sample(n), ]
write.csv(sim, file.path(here, "sim_ar1.csv"), row.names = FALSE)

ctrl <- lmeControl(msMaxIter = 1000, msMaxEval = 2000, tolerance = 1e-12, msTol = 1e-14,
                   niterEM = 0)

cases <- list(
  ovary = list(data = ovary, formula = follicles ~ s1 + c1, random = ~ 1 | Mare,
               group = "Mare", strata = NULL),
  orthodont_ar1 = list(data = orth, formula = distance ~ age, random = ~ 1 | Subject,
                       group = "Subject", strata = "Sex"),
  sim_ar1 = list(data = sim, formula = y ~ x, random = ~ x | g, group = "g", strata = NULL)
)

fit_with <- function(cs, method, rho = NULL, delta = NULL) {
  d <- cs$data
  form <- as.formula(paste("~ t |", cs$group))
  cor <- if (is.null(rho)) corAR1(form = form) else corAR1(rho, form = form, fixed = TRUE)
  if (is.null(cs$strata)) {
    w <- NULL
  } else if (is.null(delta)) {
    d$.s <- factor(d[[cs$strata]])
    w <- varIdent(form = ~ 1 | .s)
  } else {
    d$.v <- delta[as.character(d[[cs$strata]])]^2
    w <- varFixed(~ .v)
  }
  lme(cs$formula, random = cs$random, data = d, method = method, correlation = cor,
      weights = w, control = ctrl)
}

profile_se <- function(cs, method, rho, delta) {
  ref <- names(delta)[delta == 1]
  free <- names(delta)[delta != 1]
  x0 <- c(atanh(rho), log(delta[free]))
  lp <- function(x) {
    dl <- delta
    dl[free] <- exp(x[-1])
    as.numeric(logLik(fit_with(cs, method, tanh(x[1]), if (length(free)) dl else NULL)))
  }
  h <- 1e-3
  k <- length(x0)
  H <- matrix(0, k, k)
  for (i in 1:k) for (j in 1:k) {
    ei <- replace(numeric(k), i, h)
    ej <- replace(numeric(k), j, h)
    H[i, j] <- (lp(x0 + ei + ej) - lp(x0 + ei - ej) - lp(x0 - ei + ej) +
                lp(x0 - ei - ej)) / (4 * h * h)
  }
  se <- sqrt(diag(solve(-H)))
  list(se_atanh_rho = se[1], se_log_delta = as.list(setNames(se[-1], free)))
}

out <- lapply(cases, function(cs) {
  res <- list()
  for (method in c("REML", "ML")) {
    fit <- fit_with(cs, method)
    rho <- as.numeric(coef(fit$modelStruct$corStruct, unconstrained = FALSE))
    delta <- if (is.null(cs$strata)) c(all = 1) else
      coef(fit$modelStruct$varStruct, unconstrained = FALSE, allCoef = TRUE)
    re <- ranef(fit)
    res[[method]] <- c(list(
      logLik = as.numeric(logLik(fit)),
      fixef = as.list(fixef(fit)),
      se = as.list(summary(fit)$tTable[, "Std.Error"]),
      sigma = fit$sigma, rho = rho, delta = as.list(delta),
      cov_re = unname(matrix(as.numeric(getVarCov(fit)), nrow = nrow(getVarCov(fit)))),
      ranef_groups = rownames(re), ranef = unname(as.matrix(re))),
      profile_se(cs, method, rho, delta))
  }
  res
})
out$versions <- list(R = R.version.string, nlme = as.character(packageVersion("nlme")))
write(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), file.path(here, "nlme_ar1.json"))
