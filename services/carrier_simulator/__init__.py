"""The carrier, simulated: a server of the subset of an eSIM partner API (modelled on the
Airalo Partner API v2, docs/vendor/airalo/) that provisioning's adapter uses, with a
ledger of its own, and the usage reports the carrier publishes on carrier.usage.v1.

It is the outside world: the services never import it and talk to it over HTTP only;
tests may import it to build the app in-process. `python -m services.carrier_simulator`.
"""
