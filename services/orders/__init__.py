"""Orders: takes order requests and drives the top-up saga."""
