"""The kernel every stage stands on: diagnostics, limits, atomic file writes, the version,
the machine's cores and the progress interface. It imports nothing else of nindsl."""
