"""Compiled (numba) readouts of the closed-form EventProp: forward and backward of a ``CubaLI`` /
``LI`` readout. ``"avg_exp"`` / ``"sum"``: one closed form per (input spike, target) pair (below);
``"max"``: :func:`max_forward_kernel` / :func:`max_backward_kernel` (the maximum of ``V`` over
the arrivals sorted by time, and the point drive at where it is attained).

Every pair's response to its arrival ``s = t + D`` is a closed form of ``h = T - s``
(:func:`ctsnn.gradients.eventprop.readout._linear_response`, the reference): with the readout
weight ``k(u) = alpha e^{-u/tau_w}`` and ``c_m = 1/tau_m + 1/tau_w``, ``c_s = 1/tau_s +
1/tau_w``,

    R_V = k(s) (1 - e^{-h c_m}) / c_m,
    R_target = k(s) r / (tau_m c_s) [(1 - e^{-h c_m}) / c_m
                                     - (e^{-h c_m} - e^{-h c_s}) / (c_s - c_m)]

(``CubaLI``; ``LI``: ``R_target = R_V``). When every target shares ``tau_m`` (and ``tau_s``)
each exponential is a product of a per-input-spike factor and a per-synapse factor
(:func:`linear_factors`), so a pair costs a few multiplications instead of four or more
transcendentals. The products are used where neither difference cancels (``h c >= 0.5`` for
``c`` in ``c_m``, ``c_s``, ``|c_s - c_m|``: every difference keeps >= 0.39 of its larger term);
closer to ``T`` (about 1 % of W2's pairs) the pair takes the per-pair forms ``h phi1(h c_m)``
and ``h^2 exp[0, -h c_m, -h c_s]`` as before. All arithmetic float64.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from ...engine.compiled.closed_forms import kappa, phi1
from ...engine.compiled.schedule import chunk_bounds
from .layout import arrivals_at
from .tau_kernels import dd3, linear_response_terms, response_terms, scratch

__all__ = ["FACTOR_RANGE", "linear_factors", "linear_parallel", "linear_serial"]

#: Largest ``|exponent|`` of a factored exponential (:func:`factors_fit`; the readouts' and the
#: spiking layers' factors): products of two stay far from float64's overflow and subnormals.
FACTOR_RANGE = 300.0
#: A pair takes the factored form when ``h c >= _FAST`` for every rate ``c`` whose difference
#: it subtracts (``1 - e^{-x} >= 0.39`` for ``x >= 0.5``: no cancellation).
_FAST = 0.5


def factors_fit(t_in: np.ndarray, delay: np.ndarray, has_delay: bool, t_end: float,
                rate: float) -> bool:
    """Whether factored exponentials stay finite: ``rate |x| <= FACTOR_RANGE`` for every
    input time, delay and ``T`` (s), so no factor ``e^{+-rate x}`` overflows or underflows
    (False for NaN). Shared by the readouts and the spiking backward."""
    hi, lo = float(t_in.max(initial=0.0)), float(t_in.min(initial=0.0))  # (no |t| copy)
    if math.isnan(hi) or math.isnan(lo):
        return False
    span = max(t_end, hi, -lo, float(np.abs(delay).max(initial=0.0)) if has_delay else 0.0)
    return span * rate <= FACTOR_RANGE


def linear_factors(t_in: np.ndarray, delay: np.ndarray, has_delay: bool, shape: tuple,
                   tau_m: np.ndarray, tau_s: np.ndarray, cuba: bool, t_end: float,
                   inv_w: float) -> np.ndarray:
    """``qf [3, N, N_in]`` float64, the per-synapse factors ``(e^{-D/tau_w}, e^{D c_m},
    e^{D c_s})``; the kernel multiplies them with each input spike's ``(e^{-t/tau_w},
    e^{-(T - t) c_m}, e^{-(T - t) c_s})`` (computed once per input spike) into ``e^{-s/tau_w}``,
    ``e^{-h c_m}``, ``e^{-h c_s}``.

    Empty (shape ``[0, 1, 1]``: every pair takes the per-pair forms) unless all targets share
    ``tau_m`` (and, ``CubaLI``, ``tau_s``) and every exponent of a factor stays within
    ``+-`` :data:`FACTOR_RANGE` (``|t|``, ``|D|``, ``T`` times the largest rate).
    """
    empty = np.zeros((0, 1, 1))
    if tau_m.size == 0 or (tau_m != tau_m[0]).any() or (cuba and (tau_s != tau_s[0]).any()):
        return empty
    c_m = 1.0 / tau_m[0] + inv_w
    c_s = 1.0 / tau_s[0] + inv_w if cuba else c_m
    if not factors_fit(t_in, delay, has_delay, t_end, max(c_m, c_s)):
        return empty
    d = delay if has_delay else np.zeros(shape)
    qf = np.stack([np.exp(-d * inv_w), np.exp(d * c_m), np.exp(d * c_s)])
    return np.ascontiguousarray(np.broadcast_to(qf, (3, *shape)))


@numba.njit(cache=True, error_model="numpy")
def _q_decay(h: float, beta: float) -> float:
    return h * phi1(h * beta)


@numba.njit(cache=True, error_model="numpy")
def _divided_q(h: float, b1: float, b2: float, buf: np.ndarray) -> float:
    """As ``common.divided_q``: ``h^2 exp[0, -h b1, -h b2]``."""
    return h * h * dd3(0.0, -h * b1, -h * b2, buf)


@numba.njit(cache=True, error_model="numpy")
def _fast_from(c_m: float, c_s: float, cuba: bool) -> float:
    """Smallest ``h`` of the factored form: ``h c >= _FAST`` for ``c_m`` (and ``c_s``,
    ``|c_s - c_m|``); infinite when ``c_s == c_m`` (every pair per pair)."""
    low = min(c_m, c_s, abs(c_s - c_m)) if cuba else c_m
    return _FAST / low if low > 0.0 else math.inf


@numba.njit(cache=True, error_model="numpy")
def _linear_pairs(e0: int, e1: int, n0: int, n1: int, t_in: np.ndarray, b_in: np.ndarray,
                  j_in: np.ndarray, a_in: np.ndarray, weight: np.ndarray, delay: np.ndarray,
                  has_delay: bool, g: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray,
                  r: np.ndarray, cuba: bool, alpha: float, inv_w: float, t_end: float,
                  backward: bool, z: np.ndarray, g_t: np.ndarray, g_w: np.ndarray,
                  g_d: np.ndarray, g_a: np.ndarray, need_tau: bool, g_tau: np.ndarray,
                  qf: np.ndarray) -> None:
    """``"avg_exp"`` / ``"sum"`` over the pairs of input spikes ``e0..e1-1`` and targets
    ``n0..n1-1``: every pair's response ``R(s)`` in closed form; forward adds ``x R_target(s)``
    to ``z [B, N]``, backward accumulates the gradients of ``sum g z`` (with ``need_tau``
    also ``dL/d(tau_m, tau_s)`` into ``g_tau [2, N]``). With synapse factors (``qf`` of
    :func:`linear_factors`, non-empty) the exponentials of pairs with ``h >= h_fast`` are
    products with the input spike's factors (module docstring)."""
    buf = scratch()
    use_fac = qf.shape[0] > 0
    c_m = c_s = inv_cm = inv_cs = inv_dc = 0.0
    h_fast = math.inf
    if use_fac:  # shared time constants: one set of rates
        c_m = 1.0 / tau_m[0] + inv_w
        c_s = 1.0 / tau_s[0] + inv_w if cuba else c_m
        h_fast = _fast_from(c_m, c_s, cuba)
        inv_cm, inv_cs = 1.0 / c_m, 1.0 / c_s
        inv_dc = 1.0 / (c_s - c_m) if c_s != c_m else 0.0
    p_k = p_m = p_s = 0.0
    for e in range(e0, e1):
        b = b_in[e]
        j = j_in[e]
        if use_fac:  # the input spike's factors
            p_k = math.exp(-t_in[e] * inv_w)
            p_m = math.exp(-(t_end - t_in[e]) * c_m)
            p_s = math.exp(-(t_end - t_in[e]) * c_s)
        for n in range(n0, n1):
            s = t_in[e] + delay[n, j] if has_delay else t_in[e]
            if s > t_end:
                continue
            x = weight[n, j] * a_in[e]
            h = t_end - s
            rate_m = 1.0 / tau_m[n]
            if h >= h_fast:
                ks = alpha * p_k * qf[0, n, j]
                em = p_m * qf[1, n, j]
                one_m = 1.0 - em
                r_v = ks * one_m * inv_cm
                r_t = r_v
                if cuba:
                    es = p_s * qf[2, n, j]
                    r_t = ks * r[n] * rate_m * inv_cs * (one_m * inv_cm - (em - es) * inv_dc)
            else:
                ks = alpha * math.exp(-s * inv_w)
                r_v = ks * _q_decay(h, rate_m + inv_w)
                r_t = r_v
                if cuba:
                    r_t = ks * r[n] * rate_m * _divided_q(h, rate_m + inv_w,
                                                          1.0 / tau_s[n] + inv_w, buf)
            if not backward:
                z[b, n] += x * r_t
                continue
            gp = g[b, n]
            if cuba:
                lam_i = gp * r_t
                dj = lam_i
                ds = x * (lam_i / tau_s[n] - r[n] * gp * r_v / tau_m[n])
            else:
                dj = gp * r_v
                ds = x * (dj / tau_m[n] - gp * ks)
            g_w[n, j] += a_in[e] * dj
            g_d[n, j] += ds
            if g_t.shape[0] > 0:
                g_t[e] += ds
            if g_a.shape[0] > 0:
                g_a[e] += weight[n, j] * dj
            if need_tau:
                dm, dts = linear_response_terms(s, t_end, alpha, inv_w, tau_m[n], tau_s[n], r[n],
                                                cuba, buf)
                g_tau[0, n] += gp * x * dm
                g_tau[1, n] += gp * x * dts


@numba.njit(cache=True, error_model="numpy")
def _linear_chunk(c: int, n_chunks: int, t_in: np.ndarray, b_in: np.ndarray, j_in: np.ndarray,
                  a_in: np.ndarray, weight: np.ndarray, delay: np.ndarray, has_delay: bool,
                  g: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray, r: np.ndarray,
                  cuba: bool, alpha: float, inv_w: float, t_end: float, backward: bool,
                  z: np.ndarray, g_t: np.ndarray, g_w: np.ndarray, g_d: np.ndarray,
                  g_a: np.ndarray, need_tau: bool, g_tau: np.ndarray, qf: np.ndarray) -> None:
    """Chunk ``c`` of :func:`_linear_pairs`: a range of input spikes and every target; the
    forward adds into ``z[c]``, the backward into ``g_w[c]``, ``g_d[c]``, ``g_tau[c]``."""
    e0, e1 = chunk_bounds(c, n_chunks, t_in.shape[0])
    if backward:
        _linear_pairs(e0, e1, 0, weight.shape[0], t_in, b_in, j_in, a_in, weight, delay,
                      has_delay, g, tau_m, tau_s, r, cuba, alpha, inv_w, t_end, True, z[0], g_t,
                      g_w[c], g_d[c], g_a, need_tau, g_tau[c], qf)
    else:
        _linear_pairs(e0, e1, 0, weight.shape[0], t_in, b_in, j_in, a_in, weight, delay,
                      has_delay, g, tau_m, tau_s, r, cuba, alpha, inv_w, t_end, False, z[c],
                      g_t, g_w[0], g_d[0], g_a, False, g_tau[0], qf)


@numba.njit(cache=True, error_model="numpy")
def linear_serial(n_chunks: int, t_in: np.ndarray, b_in: np.ndarray, j_in: np.ndarray,
                  a_in: np.ndarray, weight: np.ndarray, delay: np.ndarray, has_delay: bool,
                  g: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray, r: np.ndarray,
                  cuba: bool, alpha: float, inv_w: float, t_end: float, backward: bool,
                  z: np.ndarray, g_t: np.ndarray, g_w: np.ndarray, g_d: np.ndarray,
                  g_a: np.ndarray, need_tau: bool, g_tau: np.ndarray, qf: np.ndarray) -> None:
    """The ``n_chunks`` chunks of :func:`_linear_pairs` one after the other.

    Args: input spikes ``t_in`` (s), ``b_in``, ``j_in``, ``a_in`` ``[E]``; ``weight``,
    ``delay`` (s) ``[N, N_in]``; ``g [B, N]`` (backward: ``dL/dz``); ``tau_m``, ``tau_s``,
    ``r`` ``[N]``; the readout weight ``alpha e^{-t inv_w}``; outputs ``z [C, B, N]``
    (forward), ``g_t``, ``g_a`` ``[E]``, ``g_w``, ``g_d`` ``[C, N, N_in]``, ``g_tau [C, 2, N]``
    (backward); chunk ``c`` (a range of input spikes) adds into its slice ``[c]`` (the caller
    sums the slices in chunk order); ``qf``: :func:`linear_factors`.
    """
    for c in range(n_chunks):
        _linear_chunk(c, n_chunks, t_in, b_in, j_in, a_in, weight, delay, has_delay, g, tau_m,
                      tau_s, r, cuba, alpha, inv_w, t_end, backward, z, g_t, g_w, g_d, g_a,
                      need_tau, g_tau, qf)


@numba.njit(cache=True, error_model="numpy", parallel=True)
def linear_parallel(n_chunks: int, t_in: np.ndarray, b_in: np.ndarray, j_in: np.ndarray,
                    a_in: np.ndarray, weight: np.ndarray, delay: np.ndarray, has_delay: bool,
                    g: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray, r: np.ndarray,
                    cuba: bool, alpha: float, inv_w: float, t_end: float, backward: bool,
                    z: np.ndarray, g_t: np.ndarray, g_w: np.ndarray, g_d: np.ndarray,
                    g_a: np.ndarray, need_tau: bool, g_tau: np.ndarray,
                    qf: np.ndarray) -> None:
    """:func:`linear_serial` with the chunks in parallel (same chunks, same results)."""
    for c in prange(n_chunks):
        _linear_chunk(c, n_chunks, t_in, b_in, j_in, a_in, weight, delay, has_delay, g, tau_m,
                      tau_s, r, cuba, alpha, inv_w, t_end, backward, z, g_t, g_w, g_d, g_a,
                      need_tau, g_tau, qf)


@numba.njit(cache=True, error_model="numpy")
def max_forward_kernel(t_in: np.ndarray, j_in: np.ndarray, a_in: np.ndarray, ev_order: np.ndarray,
                ev_ptr: np.ndarray, weight: np.ndarray, delay: np.ndarray, has_delay: bool,
                tau_m: np.ndarray, tau_s: np.ndarray, r: np.ndarray, v_leak: np.ndarray,
                cuba: bool, t_end: float, z: np.ndarray, t_star: np.ndarray,
                side: np.ndarray, src: np.ndarray, vdot: np.ndarray) -> int:
    """``z = max_t V(t)`` per ``(sample, neuron)``, with where it is attained: time ``t_star``,
    ``side`` (-1 just before / +1 just after the arrival ``src``, 0 elsewhere) and ``V'`` there.

    Candidates in the reference's order (the first of equal maxima wins): ``V(0)``, ``V`` just
    before and then just after every instant with arrivals (before the first and after the
    last of the arrivals at one time: they jump together), CubaLI's stationary points between
    arrivals, ``V(T)``. Returns -1, or a neuron whose CubaLI has ``tau_syn == tau_mem``.
    """
    n_units = weight.shape[0]
    n_samples = ev_ptr.shape[0] - 1
    for b in range(n_samples):
        e0, e1 = ev_ptr[b], ev_ptr[b + 1]
        s_loc = np.empty(e1 - e0)
        e_loc = np.empty(e1 - e0, dtype=np.int64)
        p_loc = np.empty(e1 - e0, dtype=np.int64)
        for n in range(n_units):
            vl = v_leak[n]
            tm = tau_m[n]
            best, bt, bside, bsrc, bvdot = vl, 0.0, 0, -1, 0.0
            m = arrivals_at(n, e0, e1, ev_order, t_in, j_in, delay, has_delay, t_end, s_loc,
                             e_loc, p_loc)
            if m > 0:
                order = np.argsort(s_loc[:m], kind="mergesort")
                ra, rb, ca, cb = 1.0 / tm, 0.0, 1.0, 0.0
                if cuba:
                    ts = tau_s[n]
                    if abs(ts - tm) <= 1e-6 * tm:
                        return n
                    ca = r[n] * ts / (ts - tm)
                    cb = -ca
                    ra, rb = 1.0 / ts, 1.0 / tm
                fa = np.empty(m)
                fb = np.empty(m)
                xs = np.empty(m)
                ss = np.empty(m)
                for q in range(m):  # the filters just after each arrival
                    e = e_loc[order[q]]
                    ss[q] = s_loc[order[q]]
                    xs[q] = weight[n, j_in[e]] * a_in[e]
                    if q == 0:
                        fa[q] = xs[q]
                        fb[q] = xs[q]
                    else:
                        fa[q] = math.exp(-(ss[q] - ss[q - 1]) * ra) * fa[q - 1] + xs[q]
                        fb[q] = math.exp(-(ss[q] - ss[q - 1]) * rb) * fb[q - 1] + xs[q]
                for sd in (-1, 1):
                    for q in range(m):
                        # arrivals at one instant jump together: only the left limit before
                        # the first and the value after the last of them are states of V
                        if sd < 0 and q > 0 and ss[q - 1] == ss[q]:
                            continue
                        if sd > 0 and q + 1 < m and ss[q + 1] == ss[q]:
                            continue
                        v_p = vl + ca * fa[q] + (cb * fb[q] if cuba else 0.0)
                        if cuba:
                            i_p = fa[q]
                            val = v_p
                            cur = i_p if sd > 0 else i_p - xs[q]
                            vd = (vl - val + r[n] * cur) / tm
                        else:
                            val = v_p if sd > 0 else v_p - xs[q]
                            vd = (vl - val) / tm
                        if val > best:
                            best, bt, bside, bsrc, bvdot = val, ss[q], sd, e_loc[order[q]], vd
                if cuba:
                    for q in range(m):  # stationary point inside each piece
                        length = (ss[q + 1] if q + 1 < m else t_end) - ss[q]
                        ratio = -(cb * fb[q] * rb) / (ca * fa[q] * ra)
                        if not (ratio > 0.0 and math.isfinite(ratio)):
                            continue
                        hh = math.log(ratio) / (rb - ra)
                        if not (hh > 0.0 and hh < length):
                            continue
                        val = vl + ca * fa[q] * math.exp(-ra * hh) + cb * fb[q] * math.exp(-rb * hh)
                        if val > best:
                            best, bt, bside, bsrc, bvdot = val, ss[q] + hh, 0, -1, 0.0
                length = t_end - ss[m - 1]
                val = vl + ca * fa[m - 1] * math.exp(-ra * length)
                if cuba:
                    val += cb * fb[m - 1] * math.exp(-rb * length)
                if val > best:
                    best, bt, bside, bsrc, bvdot = val, t_end, 0, -1, 0.0
            z[b, n] = best
            t_star[b, n] = bt
            side[b, n] = bside
            src[b, n] = bsrc
            vdot[b, n] = bvdot
    return -1


@numba.njit(cache=True, error_model="numpy")
def max_backward_kernel(t_in: np.ndarray, b_in: np.ndarray, j_in: np.ndarray,
                         a_in: np.ndarray, weight: np.ndarray, delay: np.ndarray,
                         has_delay: bool, g: np.ndarray, tau_m: np.ndarray, tau_s: np.ndarray,
                         r: np.ndarray, cuba: bool, t_end: float, t_star: np.ndarray,
                         side: np.ndarray, src: np.ndarray, vdot: np.ndarray,
                         g_t: np.ndarray, g_w: np.ndarray, g_d: np.ndarray,
                         g_a: np.ndarray, need_tau: bool, g_tau: np.ndarray) -> None:
    """Point drive ``g`` at ``t*``: arrivals before it see ``lam = g e^{A^T (t* - s)} e_V``;
    the arrival ``t*`` is pinned to adds ``g V'(t*)`` to its time gradient (``need_tau``:
    ``g x dpsi(t* - s)/dtau`` into ``g_tau [2, N]``)."""
    n_units = weight.shape[0]
    for e in range(t_in.shape[0]):
        b = b_in[e]
        j = j_in[e]
        for n in range(n_units):
            s = t_in[e] + delay[n, j] if has_delay else t_in[e]
            if s > t_end:
                continue
            ts, sd, gs = t_star[b, n], side[b, n], g[b, n]
            x = weight[n, j] * a_in[e]
            tm = tau_m[n]
            dj = 0.0
            ds = 0.0
            if s < ts or (s == ts and sd > 0):
                h = ts - s
                lam_v = math.exp(-h / tm) * gs
                if cuba:
                    lam_i = r[n] * kappa(h, tm, tau_s[n]) * gs
                    dj = lam_i
                    ds = x * (lam_i / tau_s[n] - r[n] * lam_v / tm)
                else:
                    dj = lam_v
                    ds = x * lam_v / tm
                if need_tau:
                    dm, dts = response_terms(h, tm, tau_s[n], r[n], cuba)
                    g_tau[0, n] += gs * x * dm
                    g_tau[1, n] += gs * x * dts
            if sd != 0 and src[b, n] == e:
                ds += gs * vdot[b, n]
            g_w[n, j] += a_in[e] * dj
            g_d[n, j] += ds
            g_t[e] += ds
            g_a[e] += weight[n, j] * dj
