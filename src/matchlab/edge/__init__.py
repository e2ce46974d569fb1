"""What every HTTP service of the stack does at its edge: phase timeouts, a connection cap, descriptor limits."""
