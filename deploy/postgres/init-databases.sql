-- Each service owns its own database.
CREATE DATABASE orders;
CREATE DATABASE payments;
CREATE DATABASE provisioning;
-- The outside world's simulators keep their ledgers apart from ours.
CREATE DATABASE stripe_simulator;
CREATE DATABASE carrier_simulator;
