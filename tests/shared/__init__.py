"""Tests for the shared package (numpy only)."""
