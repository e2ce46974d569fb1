"""The ASR experiments as plain Python: profiles, runs on a stack, records, criteria."""
