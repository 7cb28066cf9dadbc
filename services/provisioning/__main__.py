from services.provisioning.app import build_app, settings
from shared.service import run

run(build_app(), settings())
