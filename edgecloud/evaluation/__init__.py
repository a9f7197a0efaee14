"""`edgecloud eval`: the paper's Table VII (edge-only, cloud-only, cooperation) against live services."""
