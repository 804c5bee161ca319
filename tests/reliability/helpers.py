"""Shared helpers of the reliability suite: comparisons, statsmodels side by side, clusters."""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

RTOL = 1e-8


def assert_same_fit(result, ref, rtol: float = RTOL) -> None:
    """fe_params, cov_re, vcomp, scale and llf of two dlmm fits equal to ``rtol`` relative.

    Each quantity also gets an absolute floor of ``rtol`` times its natural scale (largest
    fixed effect, random-effect SDs, largest variance), so that an entry that is ~0 is
    compared on the scale of the quantity it belongs to.
    """
    assert result.converged and ref.converged
    assert list(result.fe_params.index) == list(ref.fe_params.index)
    fe, fe_ref = result.fe_params.to_numpy(), ref.fe_params.to_numpy()
    np.testing.assert_allclose(fe, fe_ref, rtol=rtol, atol=rtol * np.abs(fe_ref).max(),
                               err_msg="fe_params")
    cov, cov_ref = result.cov_re.to_numpy(), ref.cov_re.to_numpy()
    if cov_ref.size:
        sd = np.sqrt(np.diag(cov_ref))
        np.testing.assert_allclose(cov, cov_ref, rtol=rtol,
                                   atol=rtol * max(np.outer(sd, sd).max(), ref.scale),
                                   err_msg="cov_re")
    if ref.vcomp.size:
        np.testing.assert_allclose(result.vcomp, ref.vcomp, rtol=rtol,
                                   atol=rtol * max(ref.vcomp.max(), ref.scale), err_msg="vcomp")
    np.testing.assert_allclose(result.scale, ref.scale, rtol=rtol, err_msg="scale")
    np.testing.assert_allclose(result.llf, ref.llf, rtol=rtol, err_msg="llf")
    assert result.nobs == ref.nobs and result.n_groups == ref.n_groups


def statsmodels_fit(formula: str, data: pd.DataFrame, reml: bool = True, method=None,
                    **kwargs):
    """statsmodels' MixedLM fit of the same model, with its warnings and any exception.

    Returns ``(model, result or None, warning texts, exception text or None)``.
    """
    import statsmodels.formula.api as smf

    model = smf.mixedlm(formula, data, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            fit_kw = {"reml": reml}
            if method is not None:
                fit_kw["method"] = method
            result = model.fit(**fit_kw)
            error = None
        except Exception as exc:  # statsmodels' failures are what we compare against
            result, error = None, f"{type(exc).__name__}: {exc}"
    texts = sorted({f"{type(w.message).__name__}: {w.message}" for w in caught})
    return model, result, texts, error


def sm_profile_loglike(sm_model, chol: np.ndarray, vc_sd=(), reml: bool = True) -> float:
    """statsmodels' profiled log-likelihood at a relative covariance factor (sqrt params).

    ``chol`` is the lower-triangular factor of ``cov_re / scale``; ``vc_sd`` the
    ``sqrt(vcomp / scale)``. statsmodels itself is wrong at an exactly singular factor
    (it returns inf there), so callers pass nonsingular points only.
    """
    sm_model.reml = reml
    if not hasattr(sm_model, "_cov_sing"):
        sm_model._cov_sing = 0  # set by statsmodels' fit; loglike needs it
    k = chol.shape[0]
    packed = np.concatenate([chol[np.tril_indices(k)], np.asarray(vc_sd, dtype=float)])
    return float(sm_model.loglike(packed))


def nearby_points(chol: np.ndarray, vc_sd, n: int = 12, seed: int = 0,
                  sizes=(1e-3, 1e-2, 5e-2)):
    """Random nonsingular points around a (possibly singular) sqrt-parameter value."""
    rng = np.random.default_rng(seed)
    k = chol.shape[0]
    vc_sd = np.asarray(vc_sd, dtype=float)
    out = []
    for size in sizes:
        for _ in range(n):
            d = np.tril(rng.normal(size=(k, k))) * size
            c = chol + d
            idx = np.diag_indices(k)
            c[idx] = np.abs(c[idx]) + size * 0.1  # keep the factor nonsingular
            v = np.abs(vc_sd + rng.normal(size=vc_sd.shape) * size) + size * 0.1
            out.append((c, v))
    return out


def sqrt_params(result):
    """(lower Cholesky factor of cov_re / scale, sqrt(vcomp / scale)) of a dlmm fit,
    with a zero pivot where the covariance is singular."""
    psi = np.asarray(result.cov_re_unscaled, dtype=float)
    k = psi.shape[0]
    chol = np.zeros((k, k))
    for j in range(k):  # Cholesky that tolerates a zero pivot (semidefinite psi)
        d = psi[j, j] - chol[j, :j] @ chol[j, :j]
        chol[j, j] = np.sqrt(max(d, 0.0))
        for i in range(j + 1, k):
            chol[i, j] = ((psi[i, j] - chol[i, :j] @ chol[j, :j]) / chol[j, j]
                          if chol[j, j] > 0 else 0.0)
    vc_sd = np.sqrt(np.clip(np.asarray(result.vcomp) / result.scale, 0, None))
    return chol, vc_sd


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree_state(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (what "unmodified" means)."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): file_digest(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def local_cluster(n_workers: int, **kwargs):
    """A LocalCluster of worker processes on 127.0.0.1 (no dashboard) and its Client,
    always closed.

    A user's own cluster, so Dask's LocalCluster as it is, but with the lost-worker
    timeout longer than the cluster lives: the tests kill workers of one name within
    seconds of each other, and Dask closes a nanny that is restarting its worker when a
    previous removal's timer fires then (dlmm's embedded cluster does not:
    dlmm.distributed.restarting_cluster); and Dask's dashboard monitoring off or slower
    (``tests.conftest.CLUSTER_MONITORING``, as distributed's own tests have it)."""
    import dask
    from distributed import Client, LocalCluster

    options = {"threads_per_worker": 1, "processes": True, "host": "127.0.0.1",
               "dashboard_address": None, "memory_limit": "2GiB"}
    options.update(kwargs)
    from tests.conftest import CLUSTER_MONITORING  # Dask's monitoring, slower

    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1 day",
                          **CLUSTER_MONITORING}):
        with warnings.catch_warnings():
            # Another cluster of the session may hold the default HTTP port: a free one.
            warnings.filterwarnings("ignore", message="Port .* is already in use")
            cluster = LocalCluster(n_workers=n_workers, **options)
        client = None
        try:
            client = Client(cluster, security=kwargs.get("security"))
            yield cluster, client
        finally:
            if client is not None:
                client.close()
            cluster.close()


def worker_pids(client) -> dict[str, int]:
    """Worker address -> process id."""
    return dict(client.run(os.getpid))


def self_signed_certificate(folder: Path, name: str) -> tuple[str, str]:
    """A self-signed certificate (its own CA) for 127.0.0.1 and its key (cryptography)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / f"{name}.pem", folder / f"{name}-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)
