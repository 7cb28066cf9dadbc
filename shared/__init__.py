"""The common package: the event contract, topics and the Kafka/database plumbing."""
