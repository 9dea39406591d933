"""Property-based and hostile-input tests (hypothesis)."""
