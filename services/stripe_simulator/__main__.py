from services.stripe_simulator.app import build_app, run

run(build_app())
