from services.carrier_simulator.app import build_app
from services.carrier_simulator.settings import CarrierSimulatorSettings
from shared.service import run

settings = CarrierSimulatorSettings()
run(build_app(settings), settings)
