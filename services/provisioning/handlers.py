"""Provisioning's subscriber: parse, call one function, publish."""

from typing import Annotated

from faststream import Context
from faststream.kafka import KafkaRouter
from faststream.kafka.annotations import KafkaBroker

from services.provisioning import provisioning
from services.provisioning.provisioning import PROVISIONER, Provisioner
from services.provisioning.settings import SERVICE
from shared import topics
from shared.events import TopUpLine
from shared.kafka import Sessions, saga_subscriber

router = KafkaRouter()

# The carrier and the rules, set in the broker's context by app.py (or a test).
ProvisionerDep = Annotated[Provisioner, Context(PROVISIONER)]


@saga_subscriber(router, SERVICE, topics.PROVISIONING_COMMANDS)
async def on_top_up_line(
    command: TopUpLine, sessions: Sessions, provisioner: ProvisionerDep, broker: KafkaBroker
) -> None:
    await provisioning.top_up(sessions, provisioner, command)
