"""The edge gateway: routes each order to the shard that owns its symbol."""
