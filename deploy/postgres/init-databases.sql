-- Each service owns its own database.
CREATE DATABASE orders;
CREATE DATABASE payments;
CREATE DATABASE provisioning;
