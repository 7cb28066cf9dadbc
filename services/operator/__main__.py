import logging

from services.operator.app import build_app, settings
from shared.service import run

# The API reads topics with a short-lived consumer per request: aiokafka's INFO lines
# about each one would drown the operator's own (the audit lines among them).
logging.getLogger("aiokafka").setLevel(logging.WARNING)
run(build_app(), settings())
