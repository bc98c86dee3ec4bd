"""Package marker for the synthetic library used by tests/test_upstream.py."""
