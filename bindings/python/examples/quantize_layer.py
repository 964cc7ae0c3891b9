#!/usr/bin/env python3
"""Quantize one linear layer with every method libqerr offers and print a
table: bits per weight, relative layer error tr(dWHdW^T)/tr(WHW^T), time.

The layer is synthetic (correlated inputs, as real activations are) unless
--model DIR is given, in which case a real weight is taken from the model
and its inputs are still synthetic."""
import argparse
import sys
import time

import numpy as np

import qerr


def synthetic_inputs(rng, rows, n):
    mix = rng.standard_normal((n, n)).astype(np.float32) / np.sqrt(n) + 0.2 * np.eye(n)
    scale = np.exp(rng.standard_normal(n))
    return ((rng.standard_normal((rows, n)) @ mix) * scale).astype(np.float32)


def plan_for(method, bits, group_size, cols):
    """The method's defaults, with bits and group size where it has them."""
    keys = {p["key"] for p in qerr.method_params(method)}
    spec = []
    if "bits" in keys:
        spec.append("bits=%d" % bits)
    if "group_size" in keys and group_size > 0 and cols % group_size == 0:
        spec.append("group_size=%d" % group_size)
    return method + (":" + ",".join(spec) if spec else "")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--cols", type=int, default=512)
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--bits", type=int, default=4)
    ap.add_argument("--group-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", help="model directory: take --layer from it")
    ap.add_argument("--layer", default="model.layers.0.mlp.down_proj.weight")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    if args.model:
        W = qerr.Model.load(args.model).tensor(args.layer)
    else:
        W = rng.standard_normal((args.rows, args.cols)).astype(np.float32)
    X = synthetic_inputs(rng, args.samples, W.shape[1])
    calib = qerr.Calibration(W.shape[1])
    calib.add(X)

    print("libqerr %s (%s), layer %dx%d, %d calibration rows"
          % (qerr.version(), qerr.library_path, W.shape[0], W.shape[1], calib.nsamples))
    print("%-18s %-40s %10s %12s %9s" % ("method", "plan", "bits/w", "layer err", "seconds"))
    for method in qerr.methods():
        plan = plan_for(method, args.bits, args.group_size, W.shape[1])
        t0 = time.perf_counter()
        try:
            r = qerr.quantize(W, calib, plan, threads=args.threads, seed=0)
        except qerr.QerrError as e:
            print("%-18s %-40s failed: %s" % (method, plan, e))
            continue
        seconds = time.perf_counter() - t0
        err = qerr.layer_error(W, r.dequantize(), calib)
        print("%-18s %-40s %10.3f %12.6f %9.3f" % (method, plan, r.bits_per_weight, err,
                                                     seconds))
        r.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
