"""Transformation analysis: equivalence of representations (stitching, CKA) — Lenc & Vedaldi CVPR'15/IJCV'18."""
