# Reference numbers for dlmm's lme4-style features (VarCorr, coef, anova,
# Satterthwaite degrees of freedom), made with lme4 and lmerTest.
#
#   Rscript tests/reference/lme4_features.R   (from the repository root)
#
# writes tests/reference/lme4_features.json and tests/reference/data/chickweight.csv.
# The tests read the JSON; they never run R.
suppressPackageStartupMessages({
  library(lme4)
  library(lmerTest)
})
here <- "tests/reference"
ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhobeg = 2e-4, rhoend = 2e-11, maxfun = 1e5))

sleep <- read.csv(file.path(here, "data", "sleepstudy.csv"),
                  colClasses = c(Subject = "character"))
pastes <- read.csv(file.path(here, "data", "pastes.csv"))
penicillin <- read.csv(file.path(here, "data", "penicillin.csv"))
chick <- as.data.frame(ChickWeight)
chick$Chick <- as.character(chick$Chick)
chick$Diet <- as.character(chick$Diet)
write.csv(chick[, c("weight", "Time", "Chick", "Diet")],
          file.path(here, "data", "chickweight.csv"), row.names = FALSE)

varcorr_rows <- function(fit) {
  vc <- as.data.frame(VarCorr(fit))
  lapply(seq_len(nrow(vc)), function(i) list(
    grp = vc$grp[i], var1 = ifelse(is.na(vc$var1[i]), "", vc$var1[i]),
    var2 = ifelse(is.na(vc$var2[i]), "", vc$var2[i]), vcov = vc$vcov[i],
    sdcor = vc$sdcor[i]))
}

satterthwaite <- function(fit) {
  co <- summary(fit)$coefficients  # lmerTest: Satterthwaite by default
  lapply(seq_len(nrow(co)), function(i) list(
    name = rownames(co)[i], estimate = co[i, "Estimate"], se = co[i, "Std. Error"],
    df = co[i, "df"], t = co[i, "t value"], p = co[i, "Pr(>|t|)"]))
}

contrast <- function(fit, L) {
  out <- contest1D(fit, L)
  list(L = L, estimate = out$Estimate, se = out[["Std. Error"]], df = out$df,
       t = out[["t value"]], p = out[["Pr(>|t|)"]])
}

anova_rows <- function(...) {
  a <- suppressMessages(anova(...))
  lapply(seq_len(nrow(a)), function(i) list(
    model = rownames(a)[i], npar = a$npar[i], AIC = a$AIC[i], BIC = a$BIC[i],
    logLik = a$logLik[i], deviance = a$deviance[i],
    Chisq = ifelse(is.na(a$Chisq[i]), NA, a$Chisq[i]),
    Df = ifelse(is.na(a$Df[i]), NA, a$Df[i]),
    p = ifelse(is.na(a[["Pr(>Chisq)"]][i]), NA, a[["Pr(>Chisq)"]][i])))
}

coef_rows <- function(fit, factor) {
  co <- coef(fit)[[factor]]
  lapply(seq_len(nrow(co)), function(i) c(list(level = rownames(co)[i]),
                                          as.list(unlist(co[i, , drop = TRUE]))))
}

out <- list()

# sleepstudy, correlated intercept and slope (REML and ML)
ss <- lmer(Reaction ~ Days + (Days | Subject), sleep, REML = TRUE, control = ctrl)
ss_ml <- lmer(Reaction ~ Days + (Days | Subject), sleep, REML = FALSE, control = ctrl)
ss0 <- lmer(Reaction ~ Days + (1 | Subject), sleep, REML = TRUE, control = ctrl)
ss00 <- lmer(Reaction ~ 1 + (1 | Subject), sleep, REML = TRUE, control = ctrl)
out$sleepstudy <- list(
  varcorr = varcorr_rows(ss), varcorr_ml = varcorr_rows(ss_ml),
  coef = coef_rows(ss, "Subject"),
  satterthwaite = satterthwaite(ss), satterthwaite_ml = satterthwaite(ss_ml),
  contrast = contrast(ss, c(1, 7)),
  # anova(ss00, ss0, ss): REML fits, refitted by ML as lme4 does by default
  anova = anova_rows(ss00, ss0, ss),
  anova_norefit = anova_rows(ss0, ss, refit = FALSE),
  llf_ml = list(ss00 = as.numeric(logLik(refitML(ss00))),
                ss0 = as.numeric(logLik(refitML(ss0))),
                ss = as.numeric(logLik(refitML(ss)))))

# ChickWeight: a within-chick slope and a between-chick factor
cw <- lmer(weight ~ Time + Diet + (1 + Time | Chick), chick, REML = TRUE, control = ctrl)
cw0 <- lmer(weight ~ Time + (1 + Time | Chick), chick, REML = TRUE, control = ctrl)
out$chickweight <- list(
  varcorr = varcorr_rows(cw), coef = coef_rows(cw, "Chick"),
  satterthwaite = satterthwaite(cw),
  contrast = contrast(cw, c(0, 0, 1, -1, 0)),  # Diet2 - Diet3
  anova = anova_rows(cw0, cw))

# Pastes (nested: cask within batch) and Penicillin (crossed): VarCorr
pa <- lmer(strength ~ 1 + (1 | batch) + (1 | sample), pastes, REML = TRUE, control = ctrl)
pe <- lmer(diameter ~ 1 + (1 | plate) + (1 | sample), penicillin, REML = TRUE, control = ctrl)
out$pastes <- list(varcorr = varcorr_rows(pa), satterthwaite = satterthwaite(pa))
out$penicillin <- list(varcorr = varcorr_rows(pe), satterthwaite = satterthwaite(pe))

out$versions <- list(R = R.version.string, lme4 = as.character(packageVersion("lme4")),
                     lmerTest = as.character(packageVersion("lmerTest")))
writeLines(jsonlite::toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE, na = "null"),
           file.path(here, "lme4_features.json"))
