"""Shared by both halves: datasets, the bundle manifest, OIP wire schemas. Never imports torch."""
