"""The operator service: the live dashboard's backend, its access tokens and its audit log."""
