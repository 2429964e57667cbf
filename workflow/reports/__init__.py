"""Human-readable run reports (``report.html``), rendered from the run's counters (stdlib only)."""
