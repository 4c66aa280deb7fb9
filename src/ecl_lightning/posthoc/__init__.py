"""Evaluation beyond one balanced test set: shifted test priors, prior correction, expert aggregation, calibration.

Pure functions of stored logits (docs/method.md 5.1-5.4); `shifted_eval.py` drives them for `protocol=shifted`.
"""
