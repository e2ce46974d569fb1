"""The pytest layer over matchlab.stack: command-line options and session stack fixtures."""
