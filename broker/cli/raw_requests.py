"""One Kafka request from an admin command, through our own client (odradek.broker.kafka):
for the security APIs (SCRAM users, ACLs, client quotas), whose every error code and message
the commands show as the broker gave them, which kafka-python's admin client does not keep.

Any broker of the cluster answers these requests (it forwards changes to the active
controller), so the first bootstrap server that accepts a connection is asked.
"""

from __future__ import annotations

import argparse
from typing import Any

from odradek.broker.cli.common import CliError, RetriableError, check_reachable, retry, servers

# Errors after which asking again can succeed: the controller quorum is electing a leader
# (NOT_CONTROLLER) or did not answer in time (REQUEST_TIMED_OUT).
RETRIABLE_CODES = frozenset({7, 41})


def _connect(args: argparse.Namespace, timeout: float = 30.0) -> Any:
    from odradek.broker.cli import client_config
    from odradek.broker.kafka.client import AuthenticationFailed, KafkaConnection

    check_reachable(args)
    errors = []
    for server in servers(args):
        try:
            return KafkaConnection.to(server, timeout=timeout,
                                      security=client_config.of(args).security())
        except AuthenticationFailed as e:
            raise CliError(f"{server} refused this command's credentials: {e} (check "
                           "--command-config)") from None
        except (OSError, ValueError) as e:
            errors.append(f"{server}: {e}")
    raise CliError(f"cannot connect to {args.bootstrap} ({'; '.join(errors)})")


def request(args: argparse.Namespace, api_key: int, version: int, data: dict[str, Any],
            retriable: Any = None, timeout: float = 30.0) -> Any:
    """The decoded response to one request. ``retriable(response)``, if given, says whether
    the answer holds an error worth asking again for (within the commands' retry timeout).
    ``timeout`` bounds the wait for each answer (longer for requests the broker holds, such
    as AddRaftVoter waiting for a controller to catch up)."""
    from odradek.broker.kafka.client import ConnectionClosed

    def ask() -> Any:
        conn = _connect(args, timeout)
        try:
            response = conn.request(api_key, version, data)
        except (ConnectionClosed, OSError) as e:
            raise RetriableError(f"the broker at {args.bootstrap} closed the connection or "
                                 f"did not answer ({e}); is it a Kafka listener?") from e
        finally:
            conn.close()
        if retriable is not None and retriable(response):
            raise _Retry(response)
        return response

    try:
        return retry(ask)
    except _Retry as last:
        return last.response


class _Retry(RetriableError):
    def __init__(self, response: Any) -> None:
        super().__init__("the controller quorum did not complete the request")
        self.response = response
