"""The harness' pytest entry point: options and stack fixtures live in fixtures/."""

pytest_plugins = ["fixtures.options", "fixtures.stack", "fixtures.experiments"]
