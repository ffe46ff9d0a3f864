"""Stand-in servers speaking the documented subset of real services' APIs (see each docstring)."""
