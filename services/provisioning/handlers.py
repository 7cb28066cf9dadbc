"""Provisioning's subscribers: parse, call one function in one transaction, publish."""

from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker

from services.provisioning import provisioning
from shared import topics
from shared.events import TopUpLine
from shared.kafka import Sessions, publish_all, saga_subscriber

SERVICE = "provisioning"
router = KafkaRouter()


@saga_subscriber(router, SERVICE, topics.PROVISIONING_COMMANDS)
async def on_top_up_line(command: TopUpLine, sessions: Sessions, broker: KafkaBroker) -> None:
    async with sessions.begin() as session:
        outgoing = await provisioning.top_up(session, command)
    await publish_all(broker, outgoing)
