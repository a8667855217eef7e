# The R reference for tests/stats/test_mmrm_vs_r.py: the same MMRM fitted with nlme::gls
# (unstructured covariance = corSymm + varIdent, REML) and its LS-means with emmeans.
#
#   Rscript mmrm_reference.R JOBS.tsv
#
# JOBS.tsv: tab-separated with a header line and one fit per line, columns
#   data     CSV with columns subject, visit, arm (control/treatment), chg (the response),
#            the baseline and covariate columns
#   out      folder for the results
#   visits   the visit levels in order, comma-separated
#   baseline the baseline column, or empty for none
#   covariates  comma-separated covariate columns (main effects), or empty
#   factors  those covariates that are factors, or empty
# Model: chg ~ visit * arm + visit * baseline + covariates. Writes to out: coef.csv (term,
# estimate, se), loglik.txt, sigma.csv (the covariance over visits), emmeans.csv
# (emmeans(~ arm | visit)) and pairs.csv (treatment - control per visit).
suppressPackageStartupMessages({
  library(nlme)
  library(emmeans)
})

split_list <- function(x) if (is.na(x) || !nzchar(x)) character() else strsplit(x, ",")[[1]]

fit_one <- function(data_csv, out, visits, baseline, covariates, factors) {
  d <- read.csv(data_csv, stringsAsFactors = FALSE)
  d$visit <- factor(d$visit, levels = visits)
  d$arm <- factor(d$arm, levels = c("control", "treatment"))
  for (f in factors) d[[f]] <- factor(d[[f]])
  d$vnum <- as.integer(d$visit)
  d <- d[order(d$subject, d$vnum), ]

  rhs <- "visit * arm"
  if (nzchar(baseline)) rhs <- paste(rhs, "+ visit *", baseline)
  if (length(covariates)) rhs <- paste(rhs, "+", paste(covariates, collapse = " + "))
  form <- as.formula(paste("chg ~", rhs))

  # Tight convergence so that the comparison measures the engines, not their stopping rules;
  # natural = FALSE keeps apVar on the parameters emmeans' analytic Satterthwaite method needs.
  fit <- eval(bquote(gls(.(form), data = d,
    correlation = corSymm(form = ~ vnum | subject),
    weights = varIdent(form = ~ 1 | visit),
    method = "REML",
    control = glsControl(tolerance = 1e-10, msTol = 1e-12, maxIter = 500,
                         msMaxIter = 1000, natural = FALSE))))

  tt <- summary(fit)$tTable
  write.csv(data.frame(term = rownames(tt), estimate = tt[, 1], se = tt[, 2]),
            file.path(out, "coef.csv"), row.names = FALSE)
  writeLines(format(as.numeric(logLik(fit)), digits = 17), file.path(out, "loglik.txt"))

  full <- names(which(table(d$subject) == length(visits)))[1]
  V <- getVarCov(fit, individual = full)
  write.csv(as.data.frame(unclass(V)), file.path(out, "sigma.csv"), row.names = FALSE)

  emm <- emmeans(fit, ~ arm | visit, data = d, mode = "satterthwaite")
  write.csv(as.data.frame(summary(emm)), file.path(out, "emmeans.csv"), row.names = FALSE)
  write.csv(as.data.frame(summary(pairs(emm, reverse = TRUE))), file.path(out, "pairs.csv"),
            row.names = FALSE)
}

jobs <- read.delim(commandArgs(trailingOnly = TRUE)[1], colClasses = "character",
                   na.strings = character())
for (i in seq_len(nrow(jobs))) {
  j <- jobs[i, ]
  dir.create(j$out, showWarnings = FALSE, recursive = TRUE)
  fit_one(j$data, j$out, split_list(j$visits), j$baseline, split_list(j$covariates),
          split_list(j$factors))
}
