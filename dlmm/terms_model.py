"""lme4's models beyond statsmodels' shape: random-effects terms, nested or crossed.

``(year | childid) + (year | schoolid)`` (slopes at two nested levels),
``(x | g) + (0 + z + w | g)`` (several blocks on one factor), ``(x || g) + (1 | g:h)``,
``(1 | a) + (x | a:b) + (1 | a:b:c)`` (three levels): one list of terms
(:mod:`dlmm.spec.terms`), lme4's θ (:mod:`dlmm.spec.theta_layout`), the nested engine
(:mod:`dlmm.structure.nested_terms`) when the factors nest, else the crossed one
(:mod:`dlmm.structure.crossed_terms`): ``(1 + x | subj) + (1 | item)``,
``(x || subj) + (1 | item)``, ``(1 | item) + (1 | school/class)``.
:class:`TermsMixedLM` learns the model as :class:`~dlmm.model.MixedLM` does (the
same sources, sampling, levels, missing values), makes the one pass, and maximizes
the profiled (RE)ML over θ with the analytic gradient (L-BFGS-B, then a Newton polish
on its differences);
:class:`~dlmm.results.terms_results.TermsResults` says what lme4 says of the fit.

The nested engine's pass comes first: the factors nest as written (``school:class``
in ``school``), or the pass checks that they nest in the data (``childid`` within
``schoolid``, ordered by their numbers of levels). When it finds them crossed, a
second pass makes every term's factor a factor of the crossed system.
"""

from __future__ import annotations

import time

import numpy as np

from .exceptions import InputError
from .model import MixedLM
from .objective.objective import ProfiledObjective
from .objective.params import TermsMap
from .optimize.driver import maximize
from .spec.residual import ResidualModel
from .spec.terms import from_lmer
from .spec.terms_spec import TermsSpec
from .structure.crossed_terms import CrossedTermsDesign, crossed_terms_pass
from .structure.driver_memory import driver_memory as driver_memory_limit
from .structure.nested import NotNestedError
from .structure.nested_terms import TermsNestedDesign, terms_pass
from .structure.threads import optimizer_threads


class TermsMixedLM(MixedLM):
    """A linear mixed model of random-effects terms, nested or crossed (lme4's model).

    Made by :func:`dlmm.lmer` for the models statsmodels' spelling cannot state. The
    fixed part is a :class:`~dlmm.spec.formula.FormulaSpec`'s; the random effects are
    ``spec.terms``.
    """

    @classmethod
    def from_lmer(cls, formula: str, data, columns=(), missing: str = "none", client=None,
                  drop_collinear: bool = False, weights: str | None = None,
                  residual_by: str | None = None,
                  residual_ar1: str | None = None) -> TermsMixedLM:
        """The model of lme4's ``formula`` on ``data`` (see :func:`dlmm.lmer`);
        ``weights``: the column of precision weights (lme4's ``weights=``).
        ``residual_by`` and ``residual_ar1`` are refused: they need random effects of
        one grouping factor (:func:`dlmm.mixedlm`)."""
        if residual_by is not None or residual_ar1 is not None:
            raise InputError(f"residual_by and residual_ar1 need random effects of one "
                             f"grouping factor; {formula!r} has terms beyond that shape")
        fixed, terms = from_lmer(formula, columns)
        model = cls.__new__(cls)
        model._setup(TermsSpec(fixed, terms, ResidualModel(weights=weights)), data, True,
                     missing, client, drop_collinear)
        model.lmer_formula = formula
        model.engine_layout = model.layout = None
        return model

    # -- the one pass ---------------------------------------------------------------

    def _collect(self, client, progress):
        with self._reading_errors():
            self._learn(client)
        backend = self._backend_for(client)
        spec: TermsSpec = self.spec
        if backend.columns != spec.columns:
            backend = backend.select(spec.columns)
        terms = spec.terms
        columns = [tuple(c) for c in spec.term_column_names]
        chain = terms.nesting() or terms.nesting_candidate(spec.n_levels())
        self.engine_layout = terms.layout(columns, levels=chain)
        try:
            with self._reading_errors():
                stats = terms_pass(spec, self.engine_layout, backend, progress)
            self.design = TermsNestedDesign(spec, self.engine_layout)
        except NotNestedError:
            # crossed in the data: every term's factor is a factor of the crossed system
            chain = terms.factors
            self.engine_layout = terms.layout(columns, levels=chain)
            with self._reading_errors():
                stats = crossed_terms_pass(spec, self.engine_layout, backend, progress)
            self.design = CrossedTermsDesign(spec, self.engine_layout)
        # lme4 orders its terms by their factors' levels in the data (θ's order and names)
        by_term = [stats.n_nodes[level] for level in self.engine_layout.term_level]
        ordered = terms.lme4_order(by_term)
        position = {t: k for k, t in enumerate(terms)}
        self.layout = ordered.layout([columns[position[t]] for t in ordered], levels=chain)
        self.term_order = [position[t] for t in ordered]
        return stats

    def _check_stats(self, stats) -> None:
        from .objective.rank import check_full_rank
        from .objective.totals import (
            check_response_varies,
            check_rows,
            check_values,
            check_weights,
        )

        totals = stats.totals
        check_values(totals, self.spec.column_labels, self.missing)
        check_weights(totals, self.spec.residual)
        check_rows(totals, self.spec.k_fe)
        if self.drop_collinear:
            self._drop_collinear(stats)
        check_full_rank(totals.xy_cross[: self.spec.k_fe, : self.spec.k_fe], self.exog_names)
        check_response_varies(totals, self.spec.response, self.spec.centering)
        n_obs = int(totals.n_rows)
        for factor, nodes in zip(self.engine_layout.levels, stats.n_nodes):
            name = ":".join(factor)
            if nodes < 2:
                raise InputError(f"grouping factor {name!r} has {nodes} level: its variances "
                                 "cannot be estimated (lme4 refuses it too)")
            if nodes >= n_obs:
                raise InputError(f"grouping factor {name!r} has {nodes} levels for {n_obs} "
                                 "rows: its variance is not identified from the residual's "
                                 "(lme4 refuses it too)")

    # -- the fit --------------------------------------------------------------------

    @property
    def random_terms(self):
        """The model's random-effects terms as written (:class:`~dlmm.spec.terms.RandomTerms`)."""
        return self.spec.terms

    @property
    def theta_map(self) -> TermsMap:
        """θ's map (:class:`~dlmm.objective.params.TermsMap`): the engine's order of
        the terms and lme4's."""
        return TermsMap(self.layout, self.engine_layout, self.term_order)

    def engine_theta(self, theta) -> np.ndarray:
        """θ in lme4's order (``layout``) as the engine orders it (``engine_layout``)."""
        return self.theta_map.from_lme4(theta)

    def lme4_theta(self, engine_theta) -> np.ndarray:
        """θ in the engine's order as lme4 orders it."""
        return self.theta_map.to_lme4(engine_theta)

    def objective(self, stats=None, reml: bool | None = None) -> ProfiledObjective:
        """The profiled (RE)ML of this model as a function of θ in the engine's order
        (:class:`~dlmm.objective.objective.ProfiledObjective`)."""
        stats = self._ensure_stats() if stats is None else stats
        return ProfiledObjective(stats, self.theta_map,
                                 self.reml if reml is None else bool(reml),
                                 self.spec.centering.xy_scale)

    def profiled(self, engine_theta, reml: bool | None = None, stats=None):
        """The profiled (RE)ML at ``engine_theta``
        (:class:`~dlmm.objective.profiled.ProfiledValue`, ``grad_theta`` along θ)."""
        return self.objective(stats, reml).value(engine_theta)

    def fit(self, start_params=None, reml: bool = True, method=None, client=None,
            maxiter: int = 2000, callback=None, progress: bool = False,
            newton_steps: int = 8, driver_memory=None, **kwargs):
        """Maximize the profiled REML (default) or ML over θ.

        Parameters
        ----------
        start_params : array_like, optional
            θ in lme4's order (``result.theta``); default the engine's moment
            estimates where it has them (the crossed terms engine:
            :func:`~dlmm.kernels.crossed.theta.moment_covariances`), else lme4's start
            (1 on the diagonals, 0 off them).
        reml : bool
        method : str or list of str, optional
            scipy methods to try in order (default ``["lbfgs", "bfgs", "nelder-mead"]``),
            then the Newton polish on differences of the analytic gradient.
        client, maxiter, callback, progress, newton_steps, driver_memory
            As :meth:`dlmm.model.MixedLM.fit` (a crossed dense part beyond
            ``driver_memory`` is refused: lme4's terms are not factored on the workers).

        Returns
        -------
        TermsResults
        """
        from .results.terms_results import TermsResults

        if kwargs:
            raise InputError(f"unknown option {next(iter(kwargs))!r} for fit")
        with driver_memory_limit(driver_memory):  # checked here: no data read yet
            if progress and self._stats is None:
                from .progress import data_pass_progress

                with data_pass_progress() as bar:
                    self._ensure_stats(client, bar)
            stats = self._ensure_stats(client)
        self.reml = bool(reml)
        start = np.asarray(self.layout.start if start_params is None else start_params,
                           dtype=float)
        if start.shape != (self.layout.n_theta,):
            raise InputError(f"start_params has {start.size} values; θ has "
                             f"{self.layout.n_theta} ({', '.join(self.layout.names)})")
        x0 = self.engine_theta(start)
        proposal = getattr(stats, "start_theta", None)
        if start_params is None and proposal is not None:
            moments = proposal(self.engine_layout)
            x0 = x0 if moments is None else moments
        before = stats.evaluations
        fun = self.objective(stats)
        methods = [method] if isinstance(method, str) else list(
            method or ["lbfgs", "bfgs", "nelder-mead"])
        began = time.perf_counter()
        # the polish's Hessian by forward differences (m evaluations, not 2 m): a chord
        # method needs it to a few digits, and no standard error is taken from it
        hess = fun.hessian_function(rel_step=1e-6, central=False)
        with optimizer_threads(stats.engine_name):  # nested: small per-node blocks
            outcome = maximize(fun, x0, stats.totals.n_rows,
                               methods=methods, maxiter=maxiter, callback=callback,
                               newton_steps=newton_steps, hess_fun=hess)
        seconds = time.perf_counter() - began
        if not outcome.converged:
            import warnings

            from .exceptions import convergence_warning

            warnings.warn(f"the fit did not converge: {outcome.message}",
                          convergence_warning(), stacklevel=2)
        return TermsResults.from_fit(self, stats, outcome, seconds,
                                     stats.evaluations - before)
