"""Figures shared by the tasks, drawn with matplotlib's object API (no display needed)."""
