"""The matching-engine shard: order books, journal, events, HTTP API."""
