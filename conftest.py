"""The repository's own fixtures: the harness itself is the installed `matchlab` pytest plugin.

Its options and stack fixtures load through the package's ``pytest11`` entry
point (``matchlab.pytest_plugin``), so they exist whatever the command line
looks like; only the experiment fixtures, which belong to this checkout, load here.
"""

from importlib.metadata import entry_points

pytest_plugins = ["fixtures.experiments"]
if not entry_points(group="pytest11", name="matchlab"):
    # A virtualenv installed before the entry point existed (`bash scripts/setup.sh` registers it).
    pytest_plugins.insert(0, "matchlab.pytest_plugin")
