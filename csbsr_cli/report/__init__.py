"""Human-readable views of a finished run (the static HTML report)."""
