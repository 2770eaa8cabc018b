"""Demos of Phoenix on 127.0.0.1 (run by scripts/demo.sh)."""
