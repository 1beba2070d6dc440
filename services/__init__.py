"""Services: the one code path for analyses (pages and CLI) and for every write."""
