"""The `matchlab` command: operate the stack by hand (up, status, down, faults, orders, books, reports)."""
