"""Compiled (numba) time-constant gradients of the closed-form EventProp: the scalar forms of
:mod:`.taus` and the walk over one neuron's events that sums them (derivation in
``docs/eventprop-time-constants.md``). Shared by the feed-forward and recurrent backward
kernels; all arithmetic float64."""

from __future__ import annotations

import math

import numba
import numpy as np

_TERMS = 20  # at most this many Taylor terms (as common._TAYLOR_TERMS)
_INV_FACT = np.array([1.0 / math.factorial(k) for k in range(_TERMS + 4)])


@numba.njit(cache=True, error_model="numpy")
def _dd_taylor(x0: float, x1: float, x2: float, x3: float, n: int, h: np.ndarray) -> float:
    """``exp[x_0..x_{n-1}]`` (``2 <= n <= 4``; unused points ignored) by the Taylor series
    about the centre of the points; ``h`` is scratch space of ``_TERMS + 1`` floats (no
    allocation per call: this runs once per piece)."""
    lo = min(x0, x1)
    hi = max(x0, x1)
    if n > 2:
        lo = min(lo, x2)
        hi = max(hi, x2)
    if n > 3:
        lo = min(lo, x3)
        hi = max(hi, x3)
    c = 0.5 * (lo + hi)
    # terms: |x - c| <= delta, so term j is at most delta^j / j! relative to the first
    delta = 0.5 * (hi - lo)
    terms = 0
    bound = 1.0
    while bound > 1e-17 and terms < _TERMS:
        terms += 1
        bound *= delta / terms
    h[0] = 1.0
    h[1:terms + 1] = 0.0
    for k in range(n):
        d = (x0 if k == 0 else x1 if k == 1 else x2 if k == 2 else x3) - c
        for j in range(1, terms + 1):
            h[j] += d * h[j - 1]
    total = 0.0
    for j in range(terms, -1, -1):
        total += h[j] * _INV_FACT[j + n - 1]
    return math.exp(c) * total


@numba.njit(cache=True)
def scratch() -> np.ndarray:
    """Scratch space for the divided differences below (allocate once per kernel call)."""
    return np.empty(_TERMS + 1)


@numba.njit(cache=True, error_model="numpy")
def dd2(a: float, b: float, buf: np.ndarray) -> float:
    """``exp[a, b]`` without cancellation (``exp[a, a] = e^a``)."""
    lo, hi = min(a, b), max(a, b)
    if hi - lo < 1.0:
        return _dd_taylor(lo, hi, 0.0, 0.0, 2, buf)
    return (math.exp(hi) - math.exp(lo)) / (hi - lo)


@numba.njit(cache=True, error_model="numpy")
def dd3(a: float, b: float, c: float, buf: np.ndarray) -> float:
    """``exp[a, b, c]`` without cancellation (repeated points allowed)."""
    lo, mid, hi = a, b, c  # sort 3 scalars (exactly: the points themselves)
    if lo > mid:
        lo, mid = mid, lo
    if mid > hi:
        mid, hi = hi, mid
    if lo > mid:
        lo, mid = mid, lo
    if hi - lo < 1.0:
        return _dd_taylor(lo, mid, hi, 0.0, 3, buf)
    return (dd2(mid, hi, buf) - dd2(lo, mid, buf)) / (hi - lo)


@numba.njit(cache=True, error_model="numpy")
def dd4(a: float, b: float, c: float, d: float, buf: np.ndarray) -> float:
    """``exp[a, b, c, d]`` without cancellation (repeated points allowed)."""
    lo = min(a, b, c, d)
    hi = max(a, b, c, d)
    if hi - lo < 1.0:
        return _dd_taylor(a, b, c, d, 4, buf)
    # drop the smallest / the largest point: the two inner 3-point differences
    p0, p1, p2, p3 = a, b, c, d  # sort 4 scalars (no allocation)
    if p0 > p1:
        p0, p1 = p1, p0
    if p2 > p3:
        p2, p3 = p3, p2
    if p0 > p2:
        p0, p2 = p2, p0
    if p1 > p3:
        p1, p3 = p3, p1
    if p1 > p2:
        p1, p2 = p2, p1
    return (dd3(p1, p2, p3, buf) - dd3(p0, p1, p2, buf)) / (p3 - p0)


@numba.njit(cache=True, error_model="numpy")
def two_rate(h: float, tm: float, ts: float) -> tuple[float, float, float, float, float]:
    """``(e^{xm}, e^{xs}, exp[xm, xs], exp[xm, xm, xs], exp[xs, xs, xm])`` for ``xm = -h/tm``,
    ``xs = -h/ts`` (``h >= 0``) from two ``exp`` and one ``expm1``: with ``p <= q`` the two
    points and ``u = q - p``, ``exp[p, q] = e^q (1 - e^{-u})/u``, ``exp[p, p, q] = e^q (1 - (1 +
    u) e^{-u})/u^2`` and ``exp[p, q, q] = e^q (u - 1 + e^{-u})/u^2`` (series below
    ``u = 1/4``: no cancellation; equal time constants are ``u = 0``)."""
    xm = -h / tm
    xs = -h / ts
    em = math.exp(xm)
    es = math.exp(xs)
    u = abs(xs - xm)
    eq = max(em, es)
    if u < 0.25:  # series: phi = sum (-u)^k/(k+1)!, ppq = sum (-1)^k (k+1) u^k/(k+2)!, ...
        phi = 0.0
        ppq = 0.0
        pqq = 0.0
        term = 1.0  # (-u)^k
        for k in range(16):
            phi += term * _INV_FACT[k + 1]
            ppq += term * (k + 1) * _INV_FACT[k + 2]
            pqq += term * _INV_FACT[k + 2]
            term *= -u
    else:
        xm1 = math.expm1(-u)
        emu = 1.0 + xm1
        phi = -xm1 / u
        ppq = (-xm1 - u * emu) / (u * u)
        pqq = (u + xm1) / (u * u)
    d2 = eq * phi
    if xm <= xs:  # p = xm, q = xs
        return em, es, d2, eq * ppq, eq * pqq
    return em, es, d2, eq * pqq, eq * ppq


@numba.njit(cache=True, error_model="numpy")
def response_terms(h: float, tm: float, ts: float, r: float,
                   cuba: bool) -> tuple[float, float]:
    """As :func:`.taus.response_terms` (scalars): ``d psi(h) / d(tau_m, tau_s)``."""
    if not cuba:
        return h * math.exp(-h / tm) / (tm * tm), 0.0
    _, _, d2, mms, ssm = two_rate(h, tm, ts)
    hh = h * h
    dm = r * (hh * mms / (tm * tm * tm) - h * d2 / (tm * tm))
    return dm, r * hh * ssm / (tm * ts * ts)


@numba.njit(cache=True, error_model="numpy")
def linear_response_terms(s: float, t_end: float, alpha: float, inv_w: float, tm: float,
                          ts: float, r: float, cuba: bool,
                          buf: np.ndarray) -> tuple[float, float]:
    """As :func:`.taus.linear_response_terms` (scalars): ``d R(s) / d(tau_m, tau_s)``."""
    big_h = t_end - s
    ks = alpha * math.exp(-s * inv_w)
    xm = -big_h * (1.0 / tm + inv_w)
    if not cuba:
        return ks * big_h * big_h * dd3(0.0, xm, xm, buf) / (tm * tm), 0.0
    xs = -big_h * (1.0 / ts + inv_w)
    h2 = big_h * big_h
    h3 = h2 * big_h
    dm = ks * r * (h3 * dd4(0.0, xm, xm, xs, buf) / (tm * tm * tm)
                   - h2 * dd3(0.0, xm, xs, buf) / (tm * tm))
    return dm, ks * r * h3 * dd4(0.0, xm, xs, xs, buf) / (tm * ts * ts)


@numba.njit(cache=True, error_model="numpy")
def piece_terms(h: float, y: float, i: float, lam_v: float, lam_i: float, tm: float, ts: float,
                r: float, forms: tuple[float, float, float, float, float]) -> tuple[float, float]:
    """As :func:`.taus.piece_terms` for one ``CubaLIF`` piece (scalars); ``forms`` is
    :func:`two_rate` of ``h`` (``LIF``: ``lam_v y h e^{-h/tau_m} / tau_m^2``, inline)."""
    em, es, d2, mms, ssm = forms
    hh = h * h
    jm = lam_v / (tm * tm) * (y * h * em + r * i * (hh * mms / tm - h * d2))
    js = i / (ts * ts) * (lam_i * h * es + r * lam_v / tm * hh * ssm)
    return jm, js


@numba.njit(cache=True, error_model="numpy")
def neuron_tau_terms(k0: int, k1: int, m: int, s_loc: np.ndarray, x_loc: np.ndarray,
                     sp_t: np.ndarray, v_minus: np.ndarray, i_minus: np.ndarray, tm: float,
                     ts: float, r: float, y_reset: float, cuba: bool) -> tuple[float, float]:
    """``(∫ lam . df/dtau_m, ∫ lam . df/dtau_s)`` of one neuron of one sample: its spikes
    ``k0..k1-1`` (sorted, with their adjoints just before) and its ``m`` arrivals (``s_loc``,
    jumps ``x_loc``, any order). Walks the events in time order (``CubaLIF``: a spike before an
    equal-time arrival; ``LIF``: after it, the arrival fires it), carrying the state
    ``(y = V - v_leak, I)`` forward and taking each piece's end adjoint from the next spike
    (``kappa(h) = h exp[-h/tau_m, -h/tau_s] / tau_m``)."""
    jm_tot = 0.0
    js_tot = 0.0
    if k1 == k0:
        return jm_tot, js_tot
    order = np.argsort(s_loc[:m], kind="mergesort")
    y = 0.0
    cur = 0.0
    t_prev = 0.0
    q = k0  # next spike
    a = 0  # next arrival (in order)
    while q < k1:
        spike_next = a >= m
        if not spike_next:
            s = s_loc[order[a]]
            spike_next = sp_t[q] < s or (cuba and sp_t[q] == s)
        t = sp_t[q] if spike_next else s_loc[order[a]]
        h = t - t_prev
        if h > 0.0:
            w = sp_t[q] - t  # the adjoint just before this event comes from spike q
            if cuba:
                forms = two_rate(h, tm, ts)
                if y != 0.0 or cur != 0.0:
                    em_w, es_w, d2_w, _, _ = two_rate(w, tm, ts)
                    lv = em_w * v_minus[q]
                    li = es_w * i_minus[q] + r * w * d2_w / tm * v_minus[q]
                    jm, js = piece_terms(h, y, cur, lv, li, tm, ts, r, forms)
                    jm_tot += jm
                    js_tot += js
                y = y * forms[0] + r * h * forms[2] / tm * cur
                cur *= forms[1]
            else:
                em = math.exp(-h / tm)
                if y != 0.0:
                    jm_tot += math.exp(-w / tm) * v_minus[q] * y * h * em / (tm * tm)
                y *= em
        t_prev = t
        if spike_next:
            y = y_reset
            q += 1
        else:
            if cuba:
                cur += x_loc[order[a]]
            else:
                y += x_loc[order[a]]
            a += 1
    return jm_tot, js_tot
