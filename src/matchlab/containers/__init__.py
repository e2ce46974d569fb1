"""The stack as containers on a Docker engine: what runs (one spec per container), what a run created, and the backend."""
