"""Reusable UI: cache/loaders, identity, filters, tiles, charts, tables."""
