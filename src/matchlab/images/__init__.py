"""The project's container images: what each is built from, the build itself, and a base when none can be pulled."""
