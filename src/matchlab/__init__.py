"""matchlab: a matching engine, its gateway and load generator, and the harness that measures them."""

__version__ = "0.1.0"
