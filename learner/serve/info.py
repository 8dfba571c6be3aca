"""What `GET /model` and `GET /model/thresholds` say about an exported learner, from its `meta` (plain data).

Exports written before validation metrics were stored (no `meta['validation']`) still load: the answers then
carry `validation: null` and the threshold table is a 404 that says to re-export.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..reports import DEFAULT_THRESHOLD, threshold_curve

__all__ = ['model_info', 'threshold_table', 'default_threshold']


def default_threshold(meta: dict) -> float:
    """The threshold the export's stored report used (DEFAULT_THRESHOLD for old exports)."""
    report = (meta.get('validation') or {}).get('report') or {}
    return float(report.get('threshold', DEFAULT_THRESHOLD))


def model_info(meta: dict) -> dict:
    """Classes, architecture, input size, export time and the stored validation report (or None)."""
    validation = meta.get('validation') or {}
    return {
        'classes': [str(c) for c in meta['classes']],
        'is_multi': bool(meta.get('is_multi', False)),
        'arch': meta.get('arch'),
        'sz': int(meta['sz']),
        'exported_at': meta.get('exported_at'),
        'n_train': meta.get('n_train'),
        'default_threshold': default_threshold(meta),
        'validation': validation.get('report'),
    }


def _curve(meta: dict) -> Optional[dict]:
    validation = meta.get('validation') or {}
    if validation.get('curve') is not None:
        return validation['curve']
    if validation.get('probs') is not None:  # probabilities without counts: compute the counts now
        probs, labels = _numpy(validation['probs']), _numpy(validation['labels'])
        return threshold_curve(probs, labels, bool(meta.get('is_multi', False)))
    return None


def _numpy(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, 'numpy') else np.asarray(x)


def _ratios(num: np.ndarray, den: np.ndarray) -> list:
    """num / den as nested lists, None where den == 0 (precision with no predictions is undefined)."""
    out = np.divide(num, den, out=np.full(num.shape, np.nan), where=den > 0)
    return np.where(np.isnan(out), None, np.round(out, 6)).tolist()


def threshold_table(meta: dict) -> Optional[dict]:
    """Per-class and overall precision and recall at each stored threshold, or None for an export without them.

    Returns:
        {'classes': [C], 'thresholds': [T], 'precision': [T][C], 'recall': [T][C],
         'overall': {'precision': [T], 'recall': [T]}, 'n': [C] (validation items of each class)}
    """
    curve = _curve(meta)
    if curve is None:
        return None
    tp, fp, fn = (np.asarray(curve[k], dtype=np.float64) for k in ('tp', 'fp', 'fn'))  # (T, C) each
    return {
        'classes': [str(c) for c in meta['classes']],
        'thresholds': list(curve['thresholds']),
        'precision': _ratios(tp, tp + fp),
        'recall': _ratios(tp, tp + fn),
        'overall': {'precision': _ratios(tp.sum(1), (tp + fp).sum(1)), 'recall': _ratios(tp.sum(1), (tp + fn).sum(1))},
        'n': (tp[0] + fn[0]).astype(int).tolist(),
    }
