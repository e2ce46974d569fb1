"""A shard's event relay: a process beside the shard that tails its journal and publishes its events."""
