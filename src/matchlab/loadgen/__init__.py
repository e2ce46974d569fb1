"""Open-model load generation: order flows, seeding, pacing and client-side latency."""
