"""Standing the system under test up and down: services, processes, backends."""
