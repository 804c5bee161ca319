"""Reading and writing results: atomic folders, JSON encoding, the saved-result format."""
