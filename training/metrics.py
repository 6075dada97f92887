"""Pose-error metrics shared by training and the benches: MPJPE and Procrustes alignment (Umeyama's method, with or
without scale), written once so the training's PA-MPJPE and the benches' figures use the same maths."""

from __future__ import annotations

import numpy as np


def align(pred: np.ndarray, ref: np.ndarray, weight: np.ndarray, scale: bool) -> np.ndarray:
    """pred (N, J, 3) moved onto ref (N, J, 3) by the best rotation + translation (+ scale) per row N, weighted
    (N, J) (0 = ignore; NaNs must carry weight 0). Umeyama's method without reflections. Returns (N, J, 3)."""
    w = weight[..., None]
    n = np.maximum(w.sum(1, keepdims=True), 1e-12)
    p0, q0 = np.nan_to_num(pred), np.nan_to_num(ref)
    mp, mq = (w * p0).sum(1, keepdims=True) / n, (w * q0).sum(1, keepdims=True) / n
    p, q = p0 - mp, q0 - mq
    cov = np.einsum("nji,nj,njk->nik", q, weight, p)  # Σ w q pᵀ
    u, s, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones_like(s)
    fix[:, 2] = d
    rot = (u * fix[:, None, :]) @ vt  # q ≈ c · rot @ p
    c = (s * fix).sum(1) / np.maximum(np.einsum("njk,nj->n", p * p, weight), 1e-12) if scale else np.ones(len(s))
    out = c[:, None, None] * np.einsum("nik,njk->nji", rot, p) + mq
    return np.where(np.isfinite(pred), out, np.nan)


def mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint position error, same units as the inputs (…, K, 3)."""
    return float(np.mean(np.linalg.norm(pred - gt, axis=-1)))


def pa_mpjpe(pred: np.ndarray, gt: np.ndarray) -> float:
    """MPJPE after a per-frame similarity (rotation, scale, translation) Procrustes alignment; (N, K, 3)."""
    return mpjpe(align(pred, gt, np.ones(pred.shape[:2]), scale=True), gt)
