# lme4 reference fit of mlmRev's STAR (students x teachers x schools) for
# tests/structure/test_crossed_star.py. Run from the repository root:
#   Rscript tests/kernels/crossed/data/star_lme4.R
# Reads star.csv.gz (written by dlmm.bench.crossed.star_frame from mlmRev::star: the
# rows with math, gr, sx, eth, cltype; id, tch, sch as integer codes) and writes
# star_lme4.json beside it.
suppressMessages({library(lme4); library(jsonlite)})
dir <- "tests/kernels/crossed/data"
d <- read.csv(file.path(dir, "star.csv.gz"), colClasses = c(gr = "character"))
for (f in c("id", "tch", "sch")) d[[f]] <- factor(d[[f]])
for (f in c("gr", "sx", "eth", "cltype")) d[[f]] <- factor(d[[f]])
m <- lmer(math ~ gr + sx + eth + cltype + (1 | id) + (1 | tch) + (1 | sch), data = d,
          REML = TRUE, control = lmerControl(optimizer = "bobyqa",
                                             optCtrl = list(rhoend = 1e-10, maxfun = 1e5)))
vc <- as.data.frame(VarCorr(m))
re <- ranef(m, condVar = TRUE)
# every teacher and school; every tenth student (by level order), to keep the file small
keep <- function(g, r) if (g == "id") seq(1, nrow(r), by = 10) else seq_len(nrow(r))
modes <- lapply(names(re), function(g) {
  r <- re[[g]]; k <- keep(g, r)
  setNames(as.list(r[k, 1]), rownames(r)[k])
})
names(modes) <- names(re)
postvar <- lapply(names(re), function(g) {
  r <- re[[g]]; k <- keep(g, r)
  setNames(as.list(as.numeric(attr(r, "postVar"))[k]), rownames(r)[k])
})
names(postvar) <- names(re)
fe <- fixef(m)
out <- list(
  source = paste("lme4", packageVersion("lme4"), "REML, bobyqa rhoend 1e-10,", R.version.string),
  formula = "math ~ gr + sx + eth + cltype + (1 | id) + (1 | tch) + (1 | sch)",
  nobs = nobs(m), llf = as.numeric(logLik(m)),
  fe_params = as.list(fe), bse_fe = as.list(sqrt(diag(as.matrix(vcov(m))))),
  vcomp = setNames(as.list(vc$vcov[vc$grp != "Residual"]), vc$grp[vc$grp != "Residual"]),
  scale = vc$vcov[vc$grp == "Residual"],
  modes = modes, postvar = postvar)
writeLines(toJSON(out, auto_unbox = TRUE, digits = 10), file.path(dir, "star_lme4.json"))
