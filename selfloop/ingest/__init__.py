"""Files to the store: the scan, the analysis worker pool, the ingestor and the watcher (the only corpus I/O)."""
