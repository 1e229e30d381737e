"""Segments: saved audience filters on end users, compiled to SQL (broadcasts and workflows use them)."""
