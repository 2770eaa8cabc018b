lifecycle_test: {mode: ok}
