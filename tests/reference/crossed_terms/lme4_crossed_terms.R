# lme4's fits of crossed designs with slopes (issue 23), so that tests can compare
# dlmm with lme4 without R.
#
#   Rscript tests/reference/crossed_terms/lme4_crossed_terms.R   (from the repository root)
#
# Writes tests/reference/crossed_terms/data/*.csv (the data every case is fitted on)
# and tests/reference/crossed_terms/lme4_crossed_terms.json (one case per data,
# formula and REML/ML). Made with Debian's R 4.2.2 and r-cran-lme4, r-cran-lmertest,
# r-cran-mlmrev. Everything is reproduced exactly by a second run (the simulations
# are seeded; the published data set is fixed).
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)  # only through lmerTest::lmer, for Satterthwaite's df
  library(jsonlite)
})

here <- "tests/reference/crossed_terms"
data_dir <- file.path(here, "data")
dir.create(data_dir, showWarnings = FALSE, recursive = TRUE)
RNGkind("Mersenne-Twister", "Inversion", "Rejection")

# Write a data set, then read it back: every fit below is of the data exactly as
# the CSV holds it. `labels` are the grouping columns, read back as character.
write_data <- function(df, file, labels) {
  path <- file.path(data_dir, file)
  write.csv(df, path, row.names = FALSE, quote = FALSE)
  back <- read.csv(path, colClasses = setNames(rep("character", length(labels)), labels))
  stopifnot(identical(dim(back), dim(df)))
  back
}
# n draws of a q-vector with covariance L L'
draw <- function(n, L) t(L %*% matrix(rnorm(n * nrow(L)), nrow(L)))
corr_chol <- function(sds, rho) {
  q <- length(sds)
  R <- matrix(rho, q, q); diag(R) <- 1
  t(chol(diag(sds) %*% R %*% diag(sds)))
}

# 1. mlmRev::ScotsSec: pupils crossed in primary and secondary schools
sc <- mlmRev::ScotsSec
sc <- data.frame(second = as.character(sc$second), primary = as.character(sc$primary),
                 verbal = sc$verbal, attain = sc$attain)
scots <- write_data(sc, "scotssec.csv", c("second", "primary"))

# 2. kb07-shaped: 56 subjects x 32 items, each subject sees each item once in one of
# 8 conditions (a Latin square), spkr/prec/load coded +-0.5; 4 correlated effects
# per subject and per item; a few rows dropped (kb07 has 1789 of 1792)
set.seed(23001)
d <- expand.grid(item = 1:32, subj = 1:56)
cond <- (d$subj + d$item) %% 8
d$spkr <- ifelse(cond %% 2 == 0, -0.5, 0.5)
d$prec <- ifelse((cond %/% 2) %% 2 == 0, -0.5, 0.5)
d$load <- ifelse((cond %/% 4) %% 2 == 0, -0.5, 0.5)
bs <- draw(56, corr_chol(c(300, 60, 120, 50), 0.3))
bi <- draw(32, corr_chol(c(350, 80, 200, 40), -0.2))
zs <- cbind(1, d$spkr, d$prec, d$load)
d$rt <- round(2200 + 70 * d$spkr - 330 * d$prec + 40 * d$load + 20 * d$spkr * d$prec +
              rowSums(zs * bs[d$subj, ]) + rowSums(zs * bi[d$item, ]) +
              rnorm(nrow(d), sd = 650), 2)
d$subj <- sprintf("S%02d", d$subj)
d$item <- sprintf("I%02d", d$item)
d <- d[-sample(nrow(d), 3), c("subj", "item", "spkr", "prec", "load", "rt")]
kb07 <- write_data(d, "kb07sim.csv", c("subj", "item"))

# 3. an uncorrelated intercept and slope per subject, crossed with items
set.seed(23002)
d <- expand.grid(rep = 1:2, item = 1:30, subj = 1:40)
u0 <- rnorm(40, sd = 1.0); u1 <- rnorm(40, sd = 0.5); w0 <- rnorm(30, sd = 0.7)
d$x <- round(rnorm(nrow(d)), 6)
d$y <- round(1 + 0.5 * d$x + u0[d$subj] + u1[d$subj] * d$x + w0[d$item] +
             rnorm(nrow(d)), 6)
d$subj <- sprintf("s%02d", d$subj); d$item <- sprintf("i%02d", d$item)
d <- d[runif(nrow(d)) > 0.1, c("subj", "item", "x", "y")]
diag_data <- write_data(d, "sim_diag.csv", c("subj", "item"))

# 4. three crossed factors, a correlated slope on one
set.seed(23003)
n <- 1500
d <- data.frame(a = sample(30, n, TRUE), b = sample(20, n, TRUE), c = sample(12, n, TRUE))
ua <- draw(30, corr_chol(c(1.0, 0.6), 0.4)); ub <- rnorm(20, sd = 0.8)
uc <- rnorm(12, sd = 0.5)
d$x <- round(rnorm(n), 6)
d$y <- round(2 - d$x + ua[d$a, 1] + ua[d$a, 2] * d$x + ub[d$b] + uc[d$c] + rnorm(n), 6)
d$a <- sprintf("a%02d", d$a); d$b <- sprintf("b%02d", d$b); d$c <- sprintf("c%02d", d$c)
three <- write_data(d[, c("a", "b", "c", "x", "y")], "sim_three.csv", c("a", "b", "c"))

# 5. a crossed factor with a slope beside a nested one: items crossed with classes in
# schools (class labels repeat across schools)
set.seed(23004)
d <- expand.grid(pupil = 1:4, class = 1:3, school = 1:20, item = 1:8)
ui <- draw(8, corr_chol(c(0.9, 0.5), -0.3)); us <- rnorm(20, sd = 0.8)
uk <- rnorm(60, sd = 0.5)
d$x <- round(rnorm(nrow(d)), 6)
d$y <- round(1 + 0.3 * d$x + ui[d$item, 1] + ui[d$item, 2] * d$x + us[d$school] +
             uk[(d$school - 1) * 3 + d$class] + rnorm(nrow(d)), 6)
d$item <- sprintf("it%d", d$item); d$school <- sprintf("sc%02d", d$school)
d$class <- sprintf("k%d", d$class)
d <- d[runif(nrow(d)) > 0.1, c("item", "school", "class", "x", "y")]
beside <- write_data(d, "sim_beside.csv", c("item", "school", "class"))

# ---------------------------------------------------------------- the fits

controls <- list(
  bobyqa = lmerControl(optimizer = "bobyqa",
                       optCtrl = list(rhoend = 1e-11, maxfun = 1e5)),
  nloptwrap = lmerControl(optimizer = "nloptwrap",
                          optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14,
                                         xtol_rel = 1e-12, ftol_rel = 1e-14,
                                         maxeval = 1e5)))

fit_lmer <- function(formula, data, reml, control, fun = lme4::lmer) {
  warns <- character(0)
  fit <- withCallingHandlers(
    fun(formula, data = data, REML = reml, control = control),
    warning = function(w) { warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") },
    message = function(m) { warns <<- c(warns, conditionMessage(m)); invokeRestart("muffleMessage") })
  list(fit = fit, warnings = warns)
}

rows <- function(df) lapply(seq_len(nrow(df)), function(i) as.list(df[i, , drop = FALSE]))

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

describe <- function(name, formula, data, data_file, labels, reml) {
  f <- as.formula(formula)
  tries <- lapply(controls, function(ctl) fit_lmer(f, data, reml, ctl))
  llfs <- sapply(tries, function(t) as.numeric(logLik(t$fit)))
  best <- names(which.max(llfs))
  fit <- tries[[best]]$fit
  vc_by <- sapply(tries, function(t) as.data.frame(VarCorr(t$fit))$vcov)
  fe_by <- sapply(tries, function(t) fixef(t$fit))
  rel_diff <- function(m) max(abs(m[, 1] - m[, 2]) / pmax(abs(m[, 1]), 1e-300))
  default_fit <- fit_lmer(f, data, reml, lmerControl())
  lt <- fit_lmer(f, data, reml, controls[[best]], fun = lmerTest::lmer)
  co <- summary(lt$fit)$coefficients
  stopifnot(isTRUE(all.equal(unname(co[, "Estimate"]), unname(fixef(fit)), tolerance = 1e-6)))
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
    lmer = formula,
    reml = reml,
    nobs = nobs(fit),
    ngroups = as.list(ngrps(fit)),
    fe_params = as.list(fixef(fit)),
    bse_fe = as.list(setNames(sqrt(diag(as.matrix(vcov(fit)))), names(fixef(fit)))),
    cov_fe = unname(as.matrix(vcov(fit))),
    satterthwaite_df = as.list(setNames(co[, "df"], rownames(co))),
    varcorr = rows(vc[, c("grp", "var1", "var2", "vcov", "sdcor")]),
    scale = sigma(fit)^2,
    theta = I(unname(theta)),
    theta_names = I(names(theta)),
    llf = as.numeric(logLik(fit)),
    df_logLik = attr(logLik(fit), "df"),
    singular = isSingular(fit),
    optimizer = list(
      used = best, llf_by_optimizer = as.list(llfs),
      message = oi$message, feval = oi$feval,
      lme4_messages = oi$conv$lme4$messages,
      warnings = tries[[best]]$warnings,
      varcorr_max_rel_diff = rel_diff(vc_by), fe_max_rel_diff = rel_diff(fe_by),
      default_control_llf = as.numeric(logLik(default_fit$fit)),
      default_control_warnings = default_fit$warnings),
    random_effects = modes(fit),
    fitted_first = I(unname(fitted(fit)[1:10])),
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

add("scotssec", "attain ~ verbal + (1 + verbal | second) + (1 | primary)", scots,
    "scotssec.csv", c("second", "primary"))
add("kb07", paste("rt ~ spkr * prec * load + (1 + spkr + prec + load | subj) +",
                  "(1 + spkr + prec + load | item)"), kb07, "kb07sim.csv", c("subj", "item"))
add("kb07_diag", paste("rt ~ spkr * prec * load + (1 + spkr + prec + load || subj) +",
                       "(1 + spkr + prec + load || item)"), kb07, "kb07sim.csv",
    c("subj", "item"))
add("sim_diag", "y ~ x + (x || subj) + (1 | item)", diag_data, "sim_diag.csv",
    c("subj", "item"))
add("sim_three", "y ~ x + (1 + x | a) + (1 | b) + (1 | c)", three, "sim_three.csv",
    c("a", "b", "c"))
add("sim_beside", "y ~ x + (1 + x | item) + (1 | school/class)", beside, "sim_beside.csv",
    c("item", "school", "class"))

out <- list(
  versions = list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                  lmerTest = as.character(packageVersion("lmerTest")),
                  Matrix = as.character(packageVersion("Matrix")),
                  mlmRev = as.character(packageVersion("mlmRev"))),
  cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null",
                  na = "null"),
           file.path(here, "lme4_crossed_terms.json"))
