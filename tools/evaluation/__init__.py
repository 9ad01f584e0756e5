"""Evaluation: QA sets, general-capability checks, answer metrics and plots, base-versus-tuned
scores."""
