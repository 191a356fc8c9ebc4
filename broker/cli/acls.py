"""``odradek acls add|list|delete``: ACLs in the cluster metadata, as Kafka's
``kafka-acls.sh --add|--list|--remove`` handles them (CreateAcls, DescribeAcls, DeleteAcls).

``add`` makes one ACL per principal, host, operation and resource given; ``list`` and
``delete`` turn the same options into filters (a left-out option matches anything), so
``odradek acls delete --topic orders`` removes every ACL on the literal topic ``orders``.
"""

from __future__ import annotations

import argparse
import itertools
from dataclasses import dataclass
from typing import Any

from odradek.broker.acl_operations import AclOperation
from odradek.broker.cli.common import (
    CliError,
    common_options,
    guard,
    print_json,
    server_error,
    table,
)
from odradek.broker.cli.raw_requests import RETRIABLE_CODES, request
from odradek.broker.security.acl import (
    CLUSTER_NAME,
    PatternType,
    PermissionType,
    ResourceType,
)

DESCRIBE, CREATE, DELETE = 29, 30, 31
VERSION = 3
# kafka-acls.sh's operation names (AclOperation in CamelCase), every concrete one.
OPERATIONS = {op.name.replace("_", "").lower(): op for op in AclOperation
              if op not in (AclOperation.UNKNOWN, AclOperation.ANY)}
PATTERN_TYPES = {"literal": PatternType.LITERAL, "prefixed": PatternType.PREFIXED,
                 "any": PatternType.ANY, "match": PatternType.MATCH}


@dataclass(frozen=True, slots=True)
class AclView:
    resource_type: str
    resource_name: str
    pattern_type: str
    principal: str
    host: str
    operation: str
    permission: str


def _operation(name: str) -> AclOperation:
    op = OPERATIONS.get(name.replace("_", "").replace("-", "").lower())
    if op is None:
        known = ", ".join(sorted(_camel(o.name) for o in OPERATIONS.values()))
        raise CliError(f"--operation: unknown operation {name!r}; known: {known}")
    return op


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def _resources(args: argparse.Namespace) -> list[tuple[ResourceType, str]]:
    out = [(ResourceType.TOPIC, t) for t in args.topic or ()]
    out += [(ResourceType.GROUP, g) for g in args.group or ()]
    out += [(ResourceType.TRANSACTIONAL_ID, t) for t in args.transactional_id or ()]
    if args.cluster:
        out.append((ResourceType.CLUSTER, CLUSTER_NAME))
    return out


def _view(resource_type: int, name: str, pattern_type: int, principal: str, host: str,
          operation: int, permission: int) -> AclView:
    return AclView(ResourceType.from_code(resource_type).name,
                   name, PatternType.from_code(pattern_type).name, principal, host,
                   _camel(AclOperation.from_code(operation).name),
                   PermissionType.from_code(permission).name)


def _show(args: argparse.Namespace, acls: list[AclView], key: str) -> None:
    if args.json:
        print_json({key: acls} if key else acls)
        return
    table(["RESOURCE-TYPE", "RESOURCE-NAME", "PATTERN-TYPE", "PRINCIPAL", "HOST", "OPERATION",
           "PERMISSION"],
          [[a.resource_type, a.resource_name, a.pattern_type, a.principal, a.host,
            a.operation, a.permission] for a in acls])


def _entries(args: argparse.Namespace, for_filter: bool
             ) -> list[tuple[str | None, str | None, PermissionType]]:
    """(principal, host, permission) per --allow-principal/--deny-principal and host; for a
    filter, none given matches every entry."""
    out: list[tuple[str | None, str | None, PermissionType]] = []
    for principals, hosts, permission in (
            (args.allow_principal, args.allow_host, PermissionType.ALLOW),
            (args.deny_principal, args.deny_host, PermissionType.DENY)):
        for principal in principals or ():
            for host in hosts or ([None] if for_filter else ["*"]):
                out.append((principal, host, permission))
    if for_filter and not out:
        out.append((None, None, PermissionType.ANY))
    return out


def _filters(args: argparse.Namespace) -> list[dict[str, Any]]:
    pattern_type = PATTERN_TYPES[args.resource_pattern_type]
    resources: list[tuple[ResourceType, str | None]] = list(_resources(args))
    if not resources:
        resources, pattern_type = [(ResourceType.ANY, None)], PatternType.ANY
    operations = [_operation(o) for o in args.operation or ()] or [AclOperation.ANY]
    out = []
    for (rtype, name), (principal, host, permission), op in itertools.product(
            resources, _entries(args, True), operations):
        if getattr(args, "principal", None):
            principal = args.principal
        out.append({"resource_type_filter": int(rtype), "resource_name_filter": name,
                    "pattern_type_filter": int(pattern_type), "principal_filter": principal,
                    "host_filter": host, "operation": int(op),
                    "permission_type": int(permission)})
    return out


@guard
def acls_add(args: argparse.Namespace) -> int:
    resources = _resources(args)
    if not resources:
        raise CliError("name at least one resource: --topic, --group, --transactional-id or "
                       "--cluster")
    if not (args.allow_principal or args.deny_principal):
        raise CliError("name at least one --allow-principal or --deny-principal")
    if not args.operation:
        raise CliError("name at least one --operation (e.g. Read, Write, Describe, All)")
    if args.resource_pattern_type not in ("literal", "prefixed"):
        raise CliError("--resource-pattern-type must be literal or prefixed for add")
    pattern_type = PATTERN_TYPES[args.resource_pattern_type]
    creations: list[dict[str, Any]] = [
        {"resource_type": int(rtype), "resource_name": name,
         "resource_pattern_type": int(pattern_type), "principal": principal, "host": host,
         "operation": int(_operation(op)), "permission_type": int(permission)}
        for (rtype, name), (principal, host, permission), op in itertools.product(
            resources, _entries(args, False), args.operation)]

    def retriable(response: Any) -> bool:
        return any(r.error_code in RETRIABLE_CODES for r in response.results)

    response = request(args, CREATE, VERSION, {"creations": creations}, retriable)
    for creation, result in zip(creations, response.results, strict=True):
        if result.error_code:
            raise server_error(f"cannot add ACL {_describe(creation)}", result.error_code,
                               result.error_message)
    added = [_view(c["resource_type"], c["resource_name"], c["resource_pattern_type"],
                   c["principal"], c["host"], c["operation"], c["permission_type"])
             for c in creations]
    if args.json:
        print_json({"added": added})
    else:
        print(f"added {len(added)} ACL(s)")
        _show(args, added, "")
    return 0


def _describe(creation: dict[str, Any]) -> str:
    return (f"{PermissionType.from_code(creation['permission_type']).name} "
            f"{creation['principal']} {_camel(AclOperation.from_code(creation['operation']).name)}"
            f" on {ResourceType.from_code(creation['resource_type']).name} "
            f"{creation['resource_name']!r}")


def list_acls(args: argparse.Namespace) -> list[AclView]:
    seen: dict[AclView, None] = {}
    for f in _filters(args):
        response = request(args, DESCRIBE, VERSION, f)
        if response.error_code:
            raise server_error("cannot list ACLs", response.error_code, response.error_message)
        for res in response.resources:
            for acl in res.acls:
                seen[_view(res.resource_type, res.resource_name, res.pattern_type,
                           acl.principal, acl.host, acl.operation, acl.permission_type)] = None
    return list(seen)


@guard
def acls_list(args: argparse.Namespace) -> int:
    _show(args, list_acls(args), "")
    return 0


@guard
def acls_delete(args: argparse.Namespace) -> int:
    if not _resources(args):
        raise CliError("name the resource(s) whose ACLs to delete: --topic, --group, "
                       "--transactional-id or --cluster")
    filters = _filters(args)

    def retriable(response: Any) -> bool:
        return any(r.error_code in RETRIABLE_CODES for r in response.filter_results)

    response = request(args, DELETE, VERSION, {"filters": filters}, retriable)
    deleted: dict[AclView, None] = {}
    for result in response.filter_results:
        if result.error_code:
            raise server_error("cannot delete ACLs", result.error_code, result.error_message)
        for m in result.matching_acls:
            deleted[_view(m.resource_type, m.resource_name, m.pattern_type, m.principal,
                          m.host, m.operation, m.permission_type)] = None
    if args.json:
        print_json({"deleted": list(deleted)})
    else:
        print(f"deleted {len(deleted)} ACL(s)")
        _show(args, list(deleted), "")
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``acls`` and its actions."""
    common = common_options()
    acls = sub.add_parser("acls", help="ACLs: who may do what to topics, groups, "
                                       "transactional ids and the cluster")
    asub = acls.add_subparsers(dest="acls_command", required=True, metavar="ACTION")
    for action, func, text in (
            ("add", acls_add, "add ACLs (one per principal, host, operation and resource)"),
            ("list", acls_list, "list ACLs (every ACL, or those matching the options)"),
            ("delete", acls_delete, "delete the ACLs of resources that match the options")):
        p = asub.add_parser(action, parents=[common], help=text)
        p.add_argument("--topic", action="append", metavar="NAME",
                       help="a topic (a name, a prefix, or * for every topic); repeatable")
        p.add_argument("--group", action="append", metavar="NAME",
                       help="a consumer group; repeatable")
        p.add_argument("--transactional-id", action="append", metavar="ID",
                       help="a transactional id; repeatable")
        p.add_argument("--cluster", action="store_true", help="the cluster resource")
        p.add_argument("--resource-pattern-type", choices=sorted(PATTERN_TYPES),
                       default="literal",
                       help="literal (default) or prefixed names; list and delete also take "
                            "any (either) and match (every ACL that applies to the name)")
        p.add_argument("--allow-principal", action="append", metavar="PRINCIPAL",
                       help="User:NAME (or User:* for everyone) to allow; repeatable")
        p.add_argument("--deny-principal", action="append", metavar="PRINCIPAL",
                       help="User:NAME to deny; repeatable")
        p.add_argument("--allow-host", action="append", metavar="HOST",
                       help="IP address the allowed principals may connect from (default *)")
        p.add_argument("--deny-host", action="append", metavar="HOST",
                       help="IP address the denied principals are denied from (default *)")
        p.add_argument("--operation", action="append", metavar="OPERATION",
                       help="Read, Write, Create, Delete, Alter, Describe, ClusterAction, "
                            "DescribeConfigs, AlterConfigs, IdempotentWrite, All, ...; "
                            "repeatable")
        if action == "list":
            p.add_argument("--principal", metavar="PRINCIPAL",
                           help="only ACLs of this principal")
        p.set_defaults(func=func)
