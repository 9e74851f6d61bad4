"""Excitation capture, covariance/PCA thresholds, figures and Dice tables (installed as
``nnunet_se.analysis``)."""
