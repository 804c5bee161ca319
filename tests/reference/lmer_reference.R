# lme4's fits for the lme4-spelling tests (tests/test_lmer.py).
#
# Run from the repository root:  Rscript tests/reference/lmer_reference.R
# Writes tests/reference/lmer_cases.json and tests/reference/data/insteval_small.csv.
# lme4 1.1-31, R 4.2.2, optimizer nloptwrap (NLopt's BOBYQA, lmer's default) with
# tolerances far tighter than its defaults, so the estimates are lme4's optimum
# rather than its stopping point (a small variance component otherwise stops
# ~1e-4 relative short of it).
suppressPackageStartupMessages({library(lme4); library(jsonlite)})

# A small crossed InstEval: the ratings of the first 150 students (students x
# lecturers crossed, plus the dept:service interaction), so a test fit is fast.
small <- droplevels(subset(InstEval, as.integer(as.character(s)) <= 150))
out <- data.frame(s = as.character(small$s), d = as.character(small$d),
                  service = as.integer(as.character(small$service)),
                  dept = as.character(small$dept), y = small$y)
write.csv(out, "tests/reference/data/insteval_small.csv", row.names = FALSE, quote = FALSE)
small <- read.csv("tests/reference/data/insteval_small.csv",
                  colClasses = c(s = "character", d = "character", dept = "character"))

sleepstudy_csv <- read.csv("tests/reference/data/sleepstudy.csv")
pastes_csv <- read.csv("tests/reference/data/pastes.csv")
penicillin_csv <- read.csv("tests/reference/data/penicillin.csv")

describe <- function(fit, data_file, formula) {
  vc <- as.data.frame(VarCorr(fit))
  vc$var2[is.na(vc$var2)] <- ""
  re <- ranef(fit)
  modes <- lapply(names(re), function(g) {
    r <- re[[g]]
    lapply(setNames(names(r), names(r)), function(col) as.list(setNames(r[[col]], rownames(r))))
  })
  names(modes) <- names(re)
  list(
    data = data_file, lmer = formula, reml = isREML(fit),
    source = sprintf("lme4 %s (%s), lmer(%s, REML=%s), nloptwrap (BOBYQA), xtol/ftol 1e-12/1e-14",
                     packageVersion("lme4"), R.version.string, formula, isREML(fit)),
    fe_params = as.list(fixef(fit)),
    varcorr = lapply(seq_len(nrow(vc)), function(i)
      list(grp = vc$grp[i], var1 = vc$var1[i], var2 = vc$var2[i], vcov = vc$vcov[i])),
    scale = sigma(fit)^2,
    llf = as.numeric(logLik(fit)),
    nobs = nobs(fit),
    random_effects = modes
  )
}

tight <- lmerControl(optimizer = "nloptwrap",
                     optCtrl = list(xtol_abs = 1e-12, ftol_abs = 1e-14, xtol_rel = 1e-12,
                                    ftol_rel = 1e-14, maxeval = 100000))
cases <- list()
add <- function(name, formula, data, data_file, reml) {
  fit <- lmer(as.formula(formula), data = data, REML = reml, control = tight)
  cases[[name]] <<- describe(fit, data_file, formula)
}
add("sleepstudy_uncorrelated_reml", "Reaction ~ Days + (Days || Subject)",
    sleepstudy_csv, "sleepstudy.csv", TRUE)
add("sleepstudy_uncorrelated_ml", "Reaction ~ Days + (Days || Subject)",
    sleepstudy_csv, "sleepstudy.csv", FALSE)
add("sleepstudy_slope_only_reml", "Reaction ~ Days + (0 + Days | Subject)",
    sleepstudy_csv, "sleepstudy.csv", TRUE)
add("pastes_slash_reml", "strength ~ 1 + (1 | batch/cask)", pastes_csv, "pastes.csv", TRUE)
add("penicillin_ml", "diameter ~ 1 + (1 | plate) + (1 | sample)",
    penicillin_csv, "penicillin.csv", FALSE)
add("insteval_small_reml", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
    small, "insteval_small.csv", TRUE)
add("insteval_small_ml", "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
    small, "insteval_small.csv", FALSE)
add("insteval_small_nested_crossed_reml", "y ~ service + (1 | d) + (1 | s/service)",
    small, "insteval_small.csv", TRUE)

writeLines(toJSON(cases, auto_unbox = TRUE, digits = NA, pretty = TRUE),
           "tests/reference/lmer_cases.json")
