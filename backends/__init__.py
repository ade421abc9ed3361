"""Target profiles shipped with nindsl (TOML data; see README.md here)."""
