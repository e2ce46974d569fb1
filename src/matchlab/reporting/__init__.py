"""Rendering a run: the HTML report, the verdict summary, the charts and the Grafana annotations, from run records."""
