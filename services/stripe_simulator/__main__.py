from services.stripe_simulator.app import build_app
from services.stripe_simulator.settings import SimulatorSettings
from shared.service import run

settings = SimulatorSettings()
run(build_app(settings), settings)
