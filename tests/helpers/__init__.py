"""Test helpers shared across the suite (fixtures live in tests/conftest.py)."""
