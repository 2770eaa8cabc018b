"""An app whose import raises: the allowlist must fail cleanly and change nothing."""

raise RuntimeError("boom: DATABASE_URL is not set")
