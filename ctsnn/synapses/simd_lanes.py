"""SIMD bodies of the 6- and 8-lane tap windows (DCLS's float32 Gaussian at sigma 0.5: 6 taps).

numba compiles with LLVM's loop vectoriser but without its straight-line (SLP) vectoriser
(``NUMBA_SLP_VECTORIZE`` is 0 by default), so six scalar updates of consecutive addresses
stay six scalar loads, multiply-adds and stores. These intrinsics emit the vector
operations directly (LLVM IR vector types, which any x86-64 target lowers; with AVX one
register each): a window of 6 consecutive values as one 4-wide and one 2-wide vector, of 8 as
one 8-wide vector, exactly the window's lanes (nothing outside it is read or written, so the
callers' layouts need no padding).

* :func:`axpy` ``(flat, d, v, c)``: ``flat[d + n] += c[n] v`` for the 6 or 8 lanes of the
  tuple ``c`` (every lane loaded before any is stored, as the scalar form it replaces);
* :func:`dot6` / :func:`dot8` ``(flat, opos, val, a, e, ds)``: for every offset ``d`` of the
  tuple ``ds`` (several targets' rows at once: independent accumulators), the 6 or 8 sums
  over ``q = a .. e - 1`` of ``val[q] flat[d + opos[q] + n]``, as one flat tuple.

All take the element type of ``flat`` (float32 or float64; ``v``, ``c`` and ``val`` are cast
to it); ``d``, ``a``, ``e`` and ``opos``' entries are unsigned offsets (the tap kernels'
convention), not checked against the array's size (the callers' layouts guarantee them).
Multiply-adds carry LLVM's ``fast`` flags (the kernels run with ``fastmath``), so they
contract to FMA where the target has it, as the scalar form did: the forward's results are
bit-identical to the scalar form's.
"""

from __future__ import annotations

import numba
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["ROW_LANES", "ROW_VECTORS", "axpy", "dot6", "dot8", "row_vector_width",
           "row_windows"]

_FAST = ("fast",)
#: The vectors of a window: (first lane, width) per vector, by window width.
_PARTS = {6: ((0, 4), (4, 2)), 8: ((0, 8),)}


def _vec_ptr(builder, ptr, start, width):
    """``ptr + start`` as a pointer to a ``width``-vector of its element type."""
    elem = builder.gep(ptr, [start])
    return builder.bitcast(elem, ir.VectorType(ptr.type.pointee, width).as_pointer())


def _splat(builder, value, width):
    vec = ir.VectorType(value.type, width)
    one = builder.insert_element(ir.Constant(vec, ir.Undefined), value, ir.Constant(
        ir.IntType(32), 0))
    return builder.shuffle_vector(one, ir.Constant(vec, ir.Undefined),
                                  ir.Constant(ir.VectorType(ir.IntType(32), width), [0] * width))


def _pack(builder, values):
    vec = ir.Constant(ir.VectorType(values[0].type, len(values)), ir.Undefined)
    for n, value in enumerate(values):
        vec = builder.insert_element(vec, value, ir.Constant(ir.IntType(32), n))
    return vec


def _check_float_array(name, arr):
    if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
            and isinstance(arr.dtype, types.Float)):
        raise TypeError(f"{name}: a 1-d C-contiguous float array, got {arr}")


@intrinsic
def axpy(typingctx, flat, d, v, c):
    """``flat[d + n] += c[n] * v`` for every lane ``n`` of ``c`` (a 6- or 8-tuple), as vectors
    (module docstring)."""
    _check_float_array("axpy", flat)
    if not (isinstance(c, types.UniTuple) and c.count in _PARTS):
        raise TypeError(f"axpy: c must be a tuple of {' or '.join(map(str, _PARTS))} lanes, "
                        f"got {c}")
    dtype, lanes = flat.dtype, c.count

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        vv = context.cast(builder, args[2], signature.args[2], dtype)
        coefs = [context.cast(builder, builder.extract_value(args[3], n), c.dtype, dtype)
                 for n in range(lanes)]
        base = builder.gep(arr.data, [args[1]])
        align = context.get_abi_sizeof(context.get_data_type(dtype))
        for lo, width in _PARTS[lanes]:
            ptr = _vec_ptr(builder, base, ir.Constant(ir.IntType(64), lo), width)
            old = builder.load(ptr, align=align)
            add = builder.fmul(_pack(builder, coefs[lo:lo + width]),
                               _splat(builder, vv, width), flags=_FAST)
            builder.store(builder.fadd(old, add, flags=_FAST), ptr, align=align)
        return context.get_dummy_value()

    return types.void(flat, d, v, c), codegen


def _make_dot(lanes):
    parts = _PARTS[lanes]

    def dot(typingctx, flat, opos, val, a, e, ds):
        _check_float_array(f"dot{lanes}", flat)
        _check_float_array(f"dot{lanes}", val)
        if not (isinstance(opos, types.Array) and opos.ndim == 1 and opos.layout == "C"
                and isinstance(opos.dtype, types.Integer)):
            raise TypeError(f"dot{lanes}: opos must be a 1-d C-contiguous integer array, "
                            f"got {opos}")
        if not (isinstance(ds, types.UniTuple) and isinstance(ds.dtype, types.Integer)):
            raise TypeError(f"dot{lanes}: ds must be a tuple of integer offsets, got {ds}")
        dtype, n_rows = flat.dtype, ds.count

        def codegen(context, builder, signature, args):
            fl = context.make_array(signature.args[0])(context, builder, args[0])
            op = context.make_array(signature.args[1])(context, builder, args[1])
            va = context.make_array(signature.args[2])(context, builder, args[2])
            lt = context.get_data_type(dtype)
            align = context.get_abi_sizeof(lt)
            i64 = ir.IntType(64)
            bounds = [builder.zext(x, i64) if x.type.width < 64 else x for x in args[3:5]]
            bases = [builder.gep(fl.data, [builder.extract_value(args[5], k)])
                     for k in range(n_rows)]
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(ir.VectorType(lt, w), None))
                     for _, w in parts] for _ in range(n_rows)]
            with cgutils.for_range_slice(builder, bounds[0], bounds[1], ir.Constant(i64, 1),
                                         intp=i64) as (q, _):
                pos = builder.load(builder.gep(op.data, [q]))
                if pos.type.width < 64:
                    pos = builder.zext(pos, i64)
                vq = context.cast(builder, builder.load(builder.gep(va.data, [q])),
                                  signature.args[2].dtype, dtype)
                splats = {w: _splat(builder, vq, w) for _, w in parts}
                for base, row_accs in zip(bases, accs, strict=True):
                    row = builder.gep(base, [pos])
                    for acc, (lo, width) in zip(row_accs, parts, strict=True):
                        ptr = _vec_ptr(builder, row, ir.Constant(i64, lo), width)
                        prod = builder.fmul(builder.load(ptr, align=align), splats[width],
                                            flags=_FAST)
                        builder.store(builder.fadd(builder.load(acc), prod, flags=_FAST), acc)
            out = []
            for row_accs in accs:
                for acc, (_, width) in zip(row_accs, parts, strict=True):
                    vec = builder.load(acc)
                    out += [builder.extract_element(vec, ir.Constant(ir.IntType(32), n))
                            for n in range(width)]
            return context.make_tuple(builder, signature.return_type, out)

        return types.UniTuple(dtype, n_rows * lanes)(flat, opos, val, a, e, ds), codegen

    dot.__name__ = f"dot{lanes}"
    dot.__doc__ = (f"For every offset ``d`` of the tuple ``ds``, the {lanes} sums "
                   f"``sum_(q=a)^(e-1) val[q] flat[d + opos[q] + n]``, ``n < {lanes}``, as "
                   f"one flat tuple (offset-major; module docstring).")
    return intrinsic(dot)


dot6 = _make_dot(6)
dot8 = _make_dot(8)


#: Vectors per block of :func:`row_windows`, 1 .. 8 (the block's sums stay in registers
#: while every window of the block's input runs over it).
ROW_VECTORS = 8
#: Window widths :func:`row_windows` takes (those of ``dL/dx``'s windows).
ROW_LANES = (1, 2, 6, 8)


@numba.njit(inline="always")
def row_vector_width(itemsize: int) -> int:
    """Values per vector of :func:`row_windows`: 64 bytes (16 float32, 8 float64; one AVX-512
    register, two AVX ones)."""
    return 64 // itemsize


def _check_row_args(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e):
    for arr in (row, g, tw):
        _check_float_array("row_windows", arr)
    if row.dtype != g.dtype or tw.dtype != g.dtype:
        raise TypeError(f"row_windows: row, g and tw must share one dtype, got {row.dtype}, "
                        f"{g.dtype}, {tw.dtype}")
    for name, arr in (("ti", ti), ("tb", tb)):
        if not (isinstance(arr, types.Array) and arr.ndim == 1 and arr.layout == "C"
                and isinstance(arr.dtype, types.Integer)):
            raise TypeError(f"row_windows: {name} must be a 1-d C-contiguous integer array, "
                            f"got {arr}")
    for name, arg in (("rpos", rpos), ("gofs", gofs), ("rowlen", rowlen), ("u", u), ("e", e)):
        if not isinstance(arg, types.Integer):
            raise TypeError(f"row_windows: {name} must be an integer, got {arg}")


def _make_row_windows(n_vec, lanes):
    def rows(typingctx, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e):
        _check_row_args(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)

        def codegen(context, builder, signature, args):
            row_a, g_a, ti_a, tb_a, tw_a = (
                context.make_array(signature.args[k])(context, builder, args[k])
                for k in (0, 2, 5, 6, 7))
            i64, i32 = ir.IntType(64), ir.IntType(32)

            def wide(val):
                return builder.sext(val, i64) if val.type.width < 64 else val

            rpos_v, gofs_v, rowlen_v, u_v, e_v = (wide(args[k]) for k in (1, 3, 4, 8, 9))
            lt = context.get_data_type(g.dtype)
            align = context.get_abi_sizeof(lt)
            width = 64 // align
            rbase = builder.gep(row_a.data, [rpos_v])
            accs = [cgutils.alloca_once(builder, ir.VectorType(lt, width)) for _ in range(n_vec)]
            for k, acc in enumerate(accs):
                builder.store(builder.load(_vec_ptr(builder, rbase, ir.Constant(
                    i64, k * width), width), align=align), acc)
            with cgutils.for_range_slice(builder, u_v, e_v, ir.Constant(i64, 1),
                                         intp=i64) as (q, _):
                first = builder.add(builder.mul(wide(builder.load(builder.gep(
                    ti_a.data, [q]))), rowlen_v), builder.add(gofs_v, wide(builder.load(
                        builder.gep(tb_a.data, [q])))))
                gq = builder.gep(g_a.data, [first])
                cq = builder.gep(tw_a.data, [builder.mul(q, ir.Constant(i64, lanes))])
                coefs = [_splat(builder, builder.load(builder.gep(cq, [ir.Constant(i64, n)])),
                                width) for n in range(lanes)]
                # lane n of vector k: values k width + n ..: from the loads k and k + 1
                loaded = [builder.load(_vec_ptr(builder, gq, ir.Constant(i64, k * width),
                                                width), align=align)
                          for k in range(n_vec + (lanes > 1))]
                sums = [builder.load(acc) for acc in accs]
                for n in range(lanes):
                    mask = ir.Constant(ir.VectorType(i32, width), [n + m for m in range(width)])
                    for k in range(n_vec):
                        x = loaded[k] if n == 0 else builder.shuffle_vector(
                            loaded[k], loaded[k + 1], mask)
                        sums[k] = builder.fadd(sums[k], builder.fmul(coefs[n], x,
                                                                     flags=_CONTRACT),
                                               flags=_CONTRACT)
                for acc, val in zip(accs, sums, strict=True):
                    builder.store(val, acc)
            for k, acc in enumerate(accs):
                builder.store(builder.load(acc), _vec_ptr(builder, rbase, ir.Constant(
                    i64, k * width), width), align=align)
            return context.get_dummy_value()

        return types.void(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e), codegen

    rows.__name__ = f"row_windows_{n_vec}x{lanes}"
    return intrinsic(rows)


_CONTRACT = ("contract",)


def _row_windows_of(lanes):
    """:func:`row_windows` for ``lanes`` lanes: the ``n_vec`` forms as one inlined branch."""
    r1, r2, r3, r4, r5, r6, r7, r8 = (_make_row_windows(n, lanes)
                                      for n in range(1, ROW_VECTORS + 1))

    @numba.njit(inline="always")
    def run(n_vec, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e):
        if n_vec == 8:
            r8(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
        elif n_vec == 7:
            r7(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
        elif n_vec == 6:
            r6(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
        elif n_vec == 5:
            r5(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
        elif n_vec == 4:
            r4(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
        elif n_vec == 3:
            r3(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
        elif n_vec == 2:
            r2(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
        else:
            r1(row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)

    return run


_rows1, _rows2, _rows6, _rows8 = (_row_windows_of(lanes) for lanes in ROW_LANES)


@numba.njit(inline="always")
def row_windows(n_vec, lanes, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e):
    """``row[rpos + p] += sum over windows q = u .. e - 1 and lanes n < lanes of tw[q lanes +
    n] g[ti[q] rowlen + gofs + tb[q] + n + p]`` for ``p < n_vec`` vectors of
    :func:`row_vector_width` values (``1 <= n_vec <= ROW_VECTORS``, ``lanes`` one of
    :data:`ROW_LANES`; ``g``, ``tw`` flat): the block of ``row`` held in ``n_vec`` vector
    registers while every window runs over it. Per window ``n_vec + 1`` vector loads of ``g``
    (one for a single lane), its lanes by vector shuffles of two neighbouring loads (a load
    per lane and vector, unaligned, measured 1.3-1.4x slower: the loads, split across cache
    lines, were the bound), one multiply-add per lane and vector; the row loaded and stored
    once. Reads ``g`` up to ``ti[q] rowlen + gofs + tb[q] + (n_vec + 1)`` vectors (one
    vector past the block's last lane), nothing checked against the arrays' sizes. Every
    value sums its windows in order, their lanes in order, onto the row's value (one rounding
    per multiply-add where the target has FMA)."""
    if lanes == 6:
        _rows6(n_vec, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
    elif lanes == 2:
        _rows2(n_vec, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
    elif lanes == 8:
        _rows8(n_vec, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
    elif lanes == 1:
        _rows1(n_vec, row, rpos, g, gofs, rowlen, ti, tb, tw, u, e)
    else:
        raise ValueError("row_windows: lanes must be 1, 2, 6 or 8")
