"""Local development services (real processes, no Docker)."""
