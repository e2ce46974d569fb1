"""Comparing two runs' results with statistics: ``python -m matchlab.compare A B``."""
