"""Compiler commands: compile, diff, workspace build (issue: compiler)."""
