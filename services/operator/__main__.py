from services.operator.app import build_app, settings
from shared.service import run

run(build_app(), settings())
