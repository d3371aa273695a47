"""Timing helpers shared by the model benchmarks (ours against a reference, same run)."""

from __future__ import annotations

import statistics
import time

import numpy as np


def alternate(fns: dict, reps: int) -> dict:
    """Run each function once untimed, then ``reps`` rounds alternating; all times."""
    for f in fns.values():
        f()
    times = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            start = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - start)
    return times


def point_prompt_comparison(p_ours, p_ref, reps: int) -> dict:
    """One click through two predictors holding the same embedding, with and without
    multimask output: median times, speed-up and the largest logit difference."""
    point = dict(point_coords=np.array([[400.0, 600.0]]), point_labels=np.array([1]))
    out = {}
    for multimask in (True, False):
        a = p_ours.predict(**point, multimask_output=multimask, return_logits=True)
        b = p_ref.predict(**point, multimask_output=multimask, return_logits=True)
        diff = float(np.abs(a[0] - b[0]).max())
        t = alternate({
            "ours": lambda m=multimask: p_ours.predict(**point, multimask_output=m),
            "reference": lambda m=multimask: p_ref.predict(**point, multimask_output=m),
        }, reps)
        med = {k: statistics.median(v) for k, v in t.items()}
        out["multimask" if multimask else "single"] = {
            "ours_ms": med["ours"] * 1e3, "reference_ms": med["reference"] * 1e3,
            "speedup": med["reference"] / med["ours"], "max_abs_logit_diff": diff,
        }
    return out
