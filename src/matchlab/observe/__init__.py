"""Reading the experiment's evidence: Prometheus queries, verdicts, reports."""
