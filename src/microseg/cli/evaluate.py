"""Evaluator commands: check, whatif, lint (issue: evaluator)."""
