"""The pure corpus pipeline: bytes -> records -> prepared documents with their MinHash signatures (no I/O, no SQL)."""
