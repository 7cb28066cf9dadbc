"""The three services: orders, payments and provisioning."""
