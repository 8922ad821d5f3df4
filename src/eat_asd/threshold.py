"""The decision threshold: a quantile of the gamma distribution fitted to normal training scores.
NumPy and SciPy only, so that light jobs (score fusion) fit it without torch."""

from __future__ import annotations

import logging

import numpy as np

from .banks import MIN_THRESHOLD_CLIPS

log = logging.getLogger(__name__)


def gamma_threshold(train_scores: np.ndarray, quantile: float) -> float:
    """Decision threshold: the quantile of a gamma distribution fitted to normal training scores."""
    import scipy.stats

    s = np.asarray(train_scores, dtype=float)
    s = s[np.isfinite(s)]
    if len(s) < MIN_THRESHOLD_CLIPS:
        raise ValueError(f"need at least {MIN_THRESHOLD_CLIPS} finite training scores to fit the threshold, got {len(s)}")
    if np.ptp(s) == 0:
        return float(s[0])
    try:
        # Distances are >= 0: fixing the location at 0 keeps the fit stable when a few
        # training clips lie far out (a free location can run off to a huge threshold).
        params = scipy.stats.gamma.fit(np.maximum(s, 1e-8), floc=0)
        threshold = float(scipy.stats.gamma.ppf(quantile, *params))
    except Exception as err:  # scipy's fit can fail on degenerate data
        log.warning("gamma fit failed (%s); using the empirical %.2f quantile", err, quantile)
        return float(np.quantile(s, quantile))
    if not np.isfinite(threshold):
        log.warning("gamma fit gave a non-finite threshold; using the empirical %.2f quantile", quantile)
        return float(np.quantile(s, quantile))
    return threshold
