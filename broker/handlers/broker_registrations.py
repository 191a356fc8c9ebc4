"""UnregisterBroker (key 64, Kafka's ``kafka-cluster.sh unregister``): retire a broker id
for good, once the broker holds nothing. The active controller moves leadership and ISR
membership off the broker and writes an UnregisterBrokerRecord
(controller/quorum/brokers.py); DescribeCluster and Metadata then no longer list it.

As Kafka's (ControllerApis.handleUnregisterBroker, ReplicationControlManager
.unregisterBroker): the request needs ALTER on the CLUSTER (else
CLUSTER_AUTHORIZATION_FAILED); an id without a registration is BROKER_ID_NOT_REGISTERED;
a running broker is not refused. Such a broker finds out at its next heartbeat and
registers again (broker/lifecycle.py), as Kafka's broker does, so unregistering is meant
for a broker that was shut down for good. Replicas are not moved: a partition keeps the
id among its replicas until it is reassigned.

Kafka's controller answers only the error code, so clients show the error's own text
(e.g. "The given broker ID was not registered."); so do we.
"""

from __future__ import annotations

from typing import Any, Protocol

from kio.schema.errors import ErrorCode
from kio.static.protocol import Payload

from odradek.broker.handlers.admin import controller_failure
from odradek.broker.handlers.api import ApiSpec, RequestContext
from odradek.broker.handlers.authz import AclOperation, cluster_allowed
from odradek.broker.handlers.authz import message as denial
from odradek.broker.security.authorization import Authorization
from odradek.controller.metadata.requests import ControllerApi, ControllerCallFailed


class RegistrationNode(Protocol):
    @property
    def controller(self) -> ControllerApi: ...

    @property
    def authorization(self) -> Authorization: ...


def response(code: int, message: str | None = None) -> dict[str, Any]:
    return {"throttle_time": 0, "error_code": code, "error_message": message}


async def handle_unregister_broker(node: RegistrationNode, ctx: RequestContext, req: Any
                                   ) -> Payload:
    if not cluster_allowed(node.authorization, ctx, AclOperation.ALTER):
        denied = ErrorCode.cluster_authorization_failed
        return ctx.respond(response(denied, denial(denied)))
    try:
        result = await node.controller.unregister_broker(int(req.broker_id))
    except ControllerCallFailed as e:
        # Not Kafka's (its broker forwards the request): a code the client retries on.
        return ctx.respond(response(*controller_failure(e)))
    return ctx.respond(response(result.error_code))


APIS: tuple[ApiSpec[RegistrationNode], ...] = (
    ApiSpec(64, 0, 0, handle_unregister_broker),
)
