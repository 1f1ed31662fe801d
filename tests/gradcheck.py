"""Finite-difference gradient checks.

For a forward twin f (float64 NumPy) and a fixed random cotangent r, the scalar loss is
L(x) = sum(f(x) * r), whose gradient w.r.t. x is exactly what a backward op returns when handed
dy = r. Central differences (eps ~ 1e-6, truncation error O(eps^2), round-off ~1e-16 |L| / eps) give
that gradient to ~1e-9 relative in float64, far below the float32 error of the op under test, so the
comparison tolerance (1e-3 relative) is dominated by the op, not by the check.
"""
import numpy as np


def loss(f, x, r):
    return float(np.sum(np.asarray(f(x), dtype=np.float64) * r))


def pick_coords(shape, count, rng):
    """`count` distinct flat indices (all of them when the array is small)."""
    size = int(np.prod(shape))
    if size <= count:
        return np.arange(size)
    return rng.choice(size, size=count, replace=False)


def numeric_grad(f, x, r, coords, eps=1e-6):
    """Central-difference dL/dx at the given flat indices of x (float64 copy of x is perturbed)."""
    x = np.array(x, dtype=np.float64, copy=True)
    flat = x.reshape(-1)
    out = np.empty(len(coords))
    for k, i in enumerate(coords):
        orig = flat[i]
        h = eps * max(1.0, abs(orig))
        flat[i] = orig + h
        lp = loss(f, x, r)
        flat[i] = orig - h
        lm = loss(f, x, r)
        flat[i] = orig
        out[k] = (lp - lm) / (2 * h)
    return out


def check_grad(f, x, r, analytic, rng, count=8, rtol=1e-3, mag=None, eps=1e-6, name="grad"):
    """Assert analytic (the op's backward, any float dtype, same shape as x) matches central
    differences of L = sum(f(x) * r) at `count` random coordinates.

    Tolerance per coordinate: rtol * (|numeric| + floor), where floor is the magnitude (sum of |terms|)
    of that gradient entry when `mag` is given, else rtol-scaled max |analytic| (so entries that
    cancel to ~0 are judged on the scale of the whole gradient, as a float32 result must be).
    """
    analytic = np.asarray(analytic, dtype=np.float64)
    assert analytic.shape == np.shape(x), (name, analytic.shape, np.shape(x))
    coords = pick_coords(analytic.shape, count, rng)
    num = numeric_grad(f, x, r, coords, eps)
    ana = analytic.reshape(-1)[coords]
    if mag is not None:
        floor = np.asarray(mag, dtype=np.float64).reshape(-1)[coords]
    else:
        floor = np.full(len(coords), 1e-2 * max(np.abs(analytic).max(), 1e-30))
    tol = rtol * (np.abs(num) + floor) + 1e-12
    err = np.abs(ana - num)
    bad = err > tol
    assert not bad.any(), (
        f"{name}: finite differences disagree at flat indices {coords[bad].tolist()}: "
        f"analytic {ana[bad].tolist()} vs numeric {num[bad].tolist()} (tol {tol[bad].tolist()})")
