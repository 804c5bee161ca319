# lme4's fits of nested designs and several terms per factor (issue 22), so that
# tests can compare dlmm with lme4 without R.
#
#   Rscript tests/reference/nested/lme4_nested.R   (from the repository root)
#
# Writes tests/reference/nested/data/*.csv(.gz) (the data every case is fitted on)
# and tests/reference/nested/lme4_nested.json (one case per data, formula and
# REML/ML). Made with Debian's R 4.2.2 and r-cran-lme4, r-cran-lmertest,
# r-cran-mlmrev, r-cran-nlme. Everything but the time_* fields is reproduced
# exactly (the simulations are seeded; the published data sets are fixed).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)  # only through lmerTest::lmer, for Satterthwaite's df
  library(jsonlite)
})

here <- "tests/reference/nested"
data_dir <- file.path(here, "data")
dir.create(data_dir, showWarnings = FALSE, recursive = TRUE)
RNGkind("Mersenne-Twister", "Inversion", "Rejection")

# ---------------------------------------------------------------- the data

# Write a data set, then read it back: every fit below is of the data exactly as
# the CSV holds it (write.csv keeps 15 significant digits). `labels` are the
# grouping/factor columns, read back as character.
write_data <- function(df, file, labels) {
  path <- file.path(data_dir, file)
  con <- if (grepl("\\.gz$", file)) gzfile(path, "w") else file(path, "w")
  write.csv(df, con, row.names = FALSE, quote = FALSE)
  close(con)
  back <- read.csv(path, colClasses = setNames(rep("character", length(labels)), labels))
  stopifnot(identical(dim(back), dim(df)))
  back
}

# lower-triangular factor of a 2x2 covariance from sds and a correlation
chol2 <- function(sd1, sd2, rho) t(chol(matrix(c(sd1^2, rho * sd1 * sd2,
                                                 rho * sd1 * sd2, sd2^2), 2)))
draw2 <- function(n, L) t(L %*% matrix(rnorm(2 * n), 2))  # n x 2 correlated normals
# drop about 10% of the rows at random, so the designs are unbalanced
thin <- function(df) df[runif(nrow(df)) > 0.1, , drop = FALSE]

# 1. children in schools (mlmRev::egsingle): childid labels are unique across schools
eg <- mlmRev::egsingle
eg <- data.frame(schoolid = as.character(eg$schoolid), childid = as.character(eg$childid),
                 year = eg$year, math = eg$math)
egsingle <- write_data(eg, "egsingle.csv", c("schoolid", "childid"))

# 2. three levels, correlated intercept and slope at g and at g:h (h repeats across g)
set.seed(22001)
d <- expand.grid(r = 1:6, h = sprintf("h%d", 1:5), g = sprintf("g%02d", 1:40),
                 stringsAsFactors = FALSE)
bg <- draw2(40, chol2(1.0, 0.5, 0.3))
bh <- draw2(200, chol2(0.7, 0.4, -0.4))
ig <- match(d$g, sprintf("g%02d", 1:40))
ih <- (ig - 1) * 5 + match(d$h, sprintf("h%d", 1:5))
d$x <- round(rnorm(nrow(d)), 6)
d$y <- round(1 + 2 * d$x + bg[ig, 1] + bg[ig, 2] * d$x + bh[ih, 1] + bh[ih, 2] * d$x +
             rnorm(nrow(d)), 6)
sim_slopes2 <- write_data(thin(d)[, c("g", "h", "x", "y")], "sim_slopes2.csv", c("g", "h"))

# 3. two correlated blocks on one factor: (x | g) + (0 + z + w | g)
set.seed(22002)
d <- expand.grid(r = 1:12, g = sprintf("g%02d", 1:80), stringsAsFactors = FALSE)
ig <- match(d$g, sprintf("g%02d", 1:80))
b1 <- draw2(80, chol2(1.0, 0.6, 0.4))
b2 <- draw2(80, chol2(0.8, 0.5, -0.5))
d$x <- round(rnorm(nrow(d)), 6)
d$z <- round(rnorm(nrow(d)), 6)
d$w <- round(rnorm(nrow(d)), 6)
d$y <- round(0.5 + d$x - 0.5 * d$z + 0.3 * d$w + b1[ig, 1] + b1[ig, 2] * d$x +
             b2[ig, 1] * d$z + b2[ig, 2] * d$w + rnorm(nrow(d)), 6)
sim_blocks <- write_data(thin(d)[, c("g", "x", "z", "w", "y")], "sim_blocks.csv", "g")

# 4. an uncorrelated intercept and slope on g beside an intercept on g:h
set.seed(22003)
d <- expand.grid(r = 1:5, h = sprintf("h%d", 1:6), g = sprintf("g%02d", 1:40),
                 stringsAsFactors = FALSE)
ig <- match(d$g, sprintf("g%02d", 1:40))
ih <- (ig - 1) * 6 + match(d$h, sprintf("h%d", 1:6))
u0 <- rnorm(40, sd = 1.0)
u1 <- rnorm(40, sd = 0.6)
v0 <- rnorm(240, sd = 0.8)
d$x <- round(rnorm(nrow(d)), 6)
d$y <- round(2 - d$x + u0[ig] + u1[ig] * d$x + v0[ih] + rnorm(nrow(d)), 6)
sim_diag <- write_data(thin(d)[, c("g", "h", "x", "y")], "sim_diag.csv", c("g", "h"))

# 5a. three nesting levels (mlmRev::Chem97): pupils in schools in education authorities
ch <- mlmRev::Chem97
ch <- data.frame(lea = as.character(ch$lea), school = as.character(ch$school),
                 gender = as.character(ch$gender), gcsecnt = ch$gcsecnt, score = ch$score)
chem97 <- write_data(ch, "chem97.csv.gz", c("lea", "school", "gender"))
chem97$gender <- factor(chem97$gender, levels = c("M", "F"))  # R's levels: genderF

# 5b. three nesting levels with a slope at the middle one (b repeats across a, c across b)
set.seed(22005)
d <- expand.grid(r = 1:5, c = sprintf("c%d", 1:3), b = sprintf("b%d", 1:4),
                 a = sprintf("a%02d", 1:20), stringsAsFactors = FALSE)
ia <- match(d$a, sprintf("a%02d", 1:20))
ib <- (ia - 1) * 4 + match(d$b, sprintf("b%d", 1:4))
ic <- (ib - 1) * 3 + match(d$c, sprintf("c%d", 1:3))
ua <- rnorm(20, sd = 1.0)
ub <- draw2(80, chol2(0.7, 0.5, 0.5))
uc <- rnorm(240, sd = 0.5)
d$x <- round(rnorm(nrow(d)), 6)
d$y <- round(1 + 0.5 * d$x + ua[ia] + ub[ib, 1] + ub[ib, 2] * d$x + uc[ic] +
             rnorm(nrow(d)), 6)
sim_three <- write_data(thin(d)[, c("a", "b", "c", "x", "y")], "sim_three.csv",
                        c("a", "b", "c"))

# 6a. nlme::Pixel: a slope at the outer level (Dog), an intercept at Dog:Side
px <- nlme::Pixel
px <- data.frame(Dog = as.character(px$Dog), Side = as.character(px$Side),
                 day = px$day, day2 = px$day^2, pixel = px$pixel)
pixel <- write_data(px, "pixel.csv", c("Dog", "Side"))

# 6b. mlmRev::Exam: a correlated slope at one level
ex <- mlmRev::Exam
ex <- data.frame(school = as.character(ex$school), standLRT = ex$standLRT,
                 normexam = ex$normexam)
exam <- write_data(ex, "exam.csv", "school")

# ---------------------------------------------------------------- the fits

# lme4's optimum: both of lme4's BOBYQAs with tolerances far below the defaults
# (`controls`, lme4_nested_common.R, with `rows`); the one reaching the higher log-likelihood gives
# the reference numbers.
source(file.path(here, "lme4_nested_common.R"))

# the fit, with the warnings and messages it raised
fit_lmer <- function(formula, data, reml, control, fun = lme4::lmer) {
  warns <- character(0)
  fit <- withCallingHandlers(
    fun(formula, data = data, REML = reml, control = control),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { warns <<- c(warns, conditionMessage(m)); invokeRestart("muffleMessage") })
  list(fit = fit, warnings = warns)
}

# median elapsed seconds of 3 fits
time_fit <- function(formula, data, reml, control) {
  median(sapply(1:3, function(i) system.time(
    suppressWarnings(suppressMessages(lmer(formula, data = data, REML = reml,
                                           control = control))))[["elapsed"]]))
}

# each grouping factor that nests in another: every level of `inner` in one level of `outer`
nesting <- function(fit) {
  fl <- getME(fit, "flist")
  out <- list()
  for (a in names(fl)) for (b in names(fl)) if (a != b) {
    parents <- tapply(as.character(fl[[b]]), fl[[a]], function(v) length(unique(v)))
    if (all(parents == 1)) out[[length(out) + 1]] <- list(inner = a, outer = b)
  }
  out
}

# conditional modes and conditional sds (lme4's condVar) by factor, column and
# level: every level of a factor with at most `all_below` levels, else the first
# `first` in lme4's (sorted) level order
modes <- function(fit, all_below = 100, first = 20) {
  re <- as.data.frame(ranef(fit, condVar = TRUE))
  re$grp <- as.character(re$grp)
  fl <- getME(fit, "flist")
  out <- list()
  for (g in names(fl)) {
    sub <- re[re$grpvar == g, ]
    levs <- levels(fl[[g]])
    keep <- if (length(levs) <= all_below) levs else levs[seq_len(first)]
    cols <- unique(as.character(sub$term))
    pick <- function(what) lapply(setNames(cols, cols), function(col) {
      s <- sub[sub$term == col, ]
      as.list(setNames(s[[what]][match(keep, s$grp)], keep))
    })
    out[[g]] <- list(n_levels = length(levs),
                     levels = if (length(keep) == length(levs)) "all"
                              else sprintf("the first %d of %d", length(keep), length(levs)),
                     condval = pick("condval"), condsd = pick("condsd"))
  }
  out
}

describe <- function(name, formula, data, data_file, labels, reml, published = NULL,
                     factors = NULL) {
  f <- as.formula(formula)
  tries <- lapply(controls, function(ctl) fit_lmer(f, data, reml, ctl))
  llfs <- sapply(tries, function(t) as.numeric(logLik(t$fit)))
  best <- names(which.max(llfs))
  fit <- tries[[best]]$fit
  # how far apart the two optimizers stopped: the precision of lme4's estimates
  vc_by <- sapply(tries, function(t) as.data.frame(VarCorr(t$fit))$vcov)
  fe_by <- sapply(tries, function(t) fixef(t$fit))
  rel_diff <- function(m) max(abs(m[, 1] - m[, 2]) / pmax(abs(m[, 1]), 1e-300))
  default_fit <- fit_lmer(f, data, reml, lmerControl())
  lt <- fit_lmer(f, data, reml, controls[[best]], fun = lmerTest::lmer)
  co <- summary(lt$fit)$coefficients
  stopifnot(isTRUE(all.equal(unname(co[, "Estimate"]), unname(fixef(fit)), tolerance = 1e-8)))
  vc <- as.data.frame(VarCorr(fit))
  vc$var1[is.na(vc$var1)] <- ""
  vc$var2[is.na(vc$var2)] <- ""
  theta <- getME(fit, "theta")
  cnms <- getME(fit, "cnms")
  oi <- fit@optinfo
  message(sprintf("%-28s llf %.10g  (%s)  %s", name, max(llfs), best,
                  paste(tries[[best]]$warnings, collapse = "; ")))
  list(
    data = data_file,
    label_columns = I(labels),
    factor_levels = factors,
    lmer = formula,
    published = published,
    reml = reml,
    nobs = nobs(fit),
    ngroups = as.list(ngrps(fit)),
    nesting = nesting(fit),
    fe_params = as.list(fixef(fit)),
    bse_fe = as.list(setNames(sqrt(diag(as.matrix(vcov(fit)))), names(fixef(fit)))),
    cov_fe = unname(as.matrix(vcov(fit))),
    satterthwaite_df = as.list(setNames(co[, "df"], rownames(co))),
    t_values = as.list(setNames(co[, "t value"], rownames(co))),
    p_values = as.list(setNames(co[, "Pr(>|t|)"], rownames(co))),
    varcorr = rows(vc[, c("grp", "var1", "var2", "vcov", "sdcor")]),
    scale = sigma(fit)^2,
    sigma = sigma(fit),
    theta = I(unname(theta)),
    theta_names = I(names(theta)),
    theta_lower = I(getME(fit, "lower")),  # null: -Inf
    terms = lapply(seq_along(cnms), function(i) list(factor = names(cnms)[i],
                                                     columns = I(cnms[[i]]))),
    llf = as.numeric(logLik(fit)),
    df_logLik = attr(logLik(fit), "df"),
    deviance = if (reml) NULL else deviance(fit),
    REMLcrit = if (reml) REMLcrit(fit) else NULL,
    singular = isSingular(fit),
    optimizer = list(
      used = best, llf_by_optimizer = as.list(llfs),
      control = controls[[best]]$optCtrl,
      message = oi$message, feval = oi$feval,
      lme4_messages = oi$conv$lme4$messages,
      warnings = tries[[best]]$warnings,
      varcorr_max_rel_diff = rel_diff(vc_by), fe_max_rel_diff = rel_diff(fe_by),
      default_control_llf = as.numeric(logLik(default_fit$fit)),
      default_control_warnings = default_fit$warnings),
    random_effects = modes(fit),
    load_average = as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1]),
    time_default_s = time_fit(f, data, reml, lmerControl()),
    time_reference_s = time_fit(f, data, reml, controls[[best]]),
    source = sprintf("lme4 %s, lmerTest %s (%s), lmer(%s, REML=%s)",
                     packageVersion("lme4"), packageVersion("lmerTest"),
                     R.version.string, formula, reml))
}

cases <- list()
add <- function(name, ...) {
  for (reml in c(TRUE, FALSE)) {
    key <- paste0(name, if (reml) "_reml" else "_ml")
    cases[[key]] <<- describe(key, reml = reml, ...)
  }
}

add("egsingle", "math ~ year + (year | childid) + (year | schoolid)",
    egsingle, "egsingle.csv", c("schoolid", "childid"))
add("sim_slopes2", "y ~ x + (x | g) + (x | g:h)", sim_slopes2, "sim_slopes2.csv",
    c("g", "h"))
add("sim_blocks", "y ~ x + z + w + (x | g) + (0 + z + w | g)", sim_blocks,
    "sim_blocks.csv", "g")
add("sim_diag", "y ~ x + (x || g) + (1 | g:h)", sim_diag, "sim_diag.csv", c("g", "h"))
add("chem97", "score ~ gcsecnt + gender + (1 | lea/school)", chem97, "chem97.csv.gz",
    c("lea", "school", "gender"), factors = list(gender = levels(chem97$gender)))
add("sim_three", "y ~ x + (1 | a) + (x | a:b) + (1 | a:b:c)", sim_three,
    "sim_three.csv", c("a", "b", "c"))
add("pixel", "pixel ~ day + day2 + (day | Dog) + (1 | Dog:Side)", pixel, "pixel.csv",
    c("Dog", "Side"), published = "pixel ~ day + I(day^2) + (day | Dog) + (1 | Dog:Side)")
add("exam", "normexam ~ standLRT + (standLRT | school)", exam, "exam.csv", "school")

data_files <- list.files(data_dir)
out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  lmerTest = as.character(packageVersion("lmerTest")),
                  Matrix = as.character(packageVersion("Matrix")),
                  mlmRev = as.character(packageVersion("mlmRev")),
                  nlme = as.character(packageVersion("nlme"))),
  cores = parallel::detectCores(),
  data = lapply(setNames(data_files, data_files), function(f) {
    d <- read.csv(file.path(data_dir, f))
    list(rows = nrow(d), columns = names(d), bytes = file.size(file.path(data_dir, f)))
  }),
  cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                  na = "null"),
           file.path(here, "lme4_nested.json"))
