"""The index of runs under the reports directory, and ``python -m matchlab.history`` over it."""
