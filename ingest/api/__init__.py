"""HTTP entry points: `v1_events` (signed single events), `sdk` (batches, identify), `health`."""
