"""The tar format: header blocks, the walk over them, the header-only index and its cache file,
and byte readers (a file, a split tar's parts). Knows nothing of lists, sources or outputs."""
