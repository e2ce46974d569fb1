"""What every HTTP service of the stack does at its edge: phase timeouts, a connection cap, descriptor limits,
and the fast lane for its hot route (with the replies and body checks both of its paths share)."""
