"""The repository's own fixtures: the harness itself is the installed `matchlab` pytest plugin.

Its options and stack fixtures load through the package's ``pytest11`` entry
point (``matchlab.pytest_plugin``), so they exist whatever the command line
looks like; only the experiment fixtures, which belong to this checkout, load here.
"""

pytest_plugins = ["fixtures.experiments"]
