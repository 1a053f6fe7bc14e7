"""Evaluation: plots and reports of measured figures."""
