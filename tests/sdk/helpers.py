"""Client helpers for the modern suite: generated Connect clients from gitpod-sdk 1.x."""

from __future__ import annotations

import inspect
import uuid
from typing import Any, Callable, Iterable

import pytest
from connectrpc.code import Code
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.protocol import ProtocolType
from google.protobuf.message import Message
from pyqwest import HTTPVersion, SyncClient, SyncHTTPTransport

from buf.validate import validate_pb2
from gitpod.v1 import event_connect, group_connect, identity_connect, organization_connect
from gitpod.v1 import runner_configuration_connect, runner_connect, user_connect
from gitpod.v1 import event_pb2 as ep
from gitpod.v1 import group_pb2 as gp
from gitpod.v1 import identity_pb2 as ip
from gitpod.v1 import organization_pb2 as op
from gitpod.v1 import pagination_pb2 as pg
from gitpod.v1 import runner_configuration_pb2 as rc
from gitpod.v1 import runner_pb2 as rp
from gitpod.v1 import user_pb2 as up

__all__ = [
    "Api", "Actor", "Code", "ConnectError", "expect_error", "error_text", "list_all",
    "new_name", "rp", "rc", "ep", "gp", "ip", "op", "pg", "up", "ZERO_UUID", "random_uuid",
]

ZERO_UUID = "00000000-0000-0000-0000-000000000000"

_HTTP1 = SyncClient(SyncHTTPTransport(timeout=60.0))
_HTTP2 = SyncClient(SyncHTTPTransport(timeout=60.0, http_version=HTTPVersion.HTTP2))

_SERVICES = {
    "runners": runner_connect.RunnerServiceClientSync,
    "config": runner_configuration_connect.RunnerConfigurationServiceClientSync,
    "identity": identity_connect.IdentityServiceClientSync,
    "users": user_connect.UserServiceClientSync,
    "groups": group_connect.GroupServiceClientSync,
    "orgs": organization_connect.OrganizationServiceClientSync,
    "events": event_connect.EventServiceClientSync,
}


def random_uuid() -> str:
    return str(uuid.uuid4())


def new_name(prefix: str = "t") -> str:
    """A unique, valid (3..80 chars) name."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class _Service:
    """Wraps a generated *ClientSync: adds the Authorization header and, for
    NO_SIDE_EFFECTS methods when requested, use_get=True."""

    def __init__(self, client, headers: dict[str, str], use_get: bool):
        self._client = client
        self._headers = headers
        self._use_get = use_get

    def __getattr__(self, name: str) -> Callable:
        fn = getattr(self._client, name)
        if not callable(fn) or name.startswith("_"):
            return fn
        accepts_get = "use_get" in inspect.signature(fn).parameters

        def call(request: Message, **kwargs):
            headers = dict(self._headers)
            headers.update(kwargs.pop("headers", {}) or {})
            if accepts_get and self._use_get:
                kwargs.setdefault("use_get", True)
            return fn(request, headers=headers, **kwargs)

        call.__name__ = name
        return call


class Api:
    """All the services we test, as one caller sees them."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        codec: str = "proto",
        use_get: bool = False,
        protocol: str = "connect",
        extra_headers: dict[str, str] | None = None,
    ):
        self.base_url = base_url
        self.token = token
        headers = dict(extra_headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {
            "codec": google_protobuf_json_codec() if codec == "json" else google_protobuf_binary_codec(),
            "http_client": _HTTP1,
        }
        if protocol == "grpc":
            kwargs["protocol"] = ProtocolType.GRPC
            kwargs["http_client"] = _HTTP2
        elif protocol == "grpc-web":
            kwargs["protocol"] = ProtocolType.GRPC_WEB
        for attr, cls in _SERVICES.items():
            setattr(self, attr, _Service(cls(base_url, **kwargs), headers, use_get))

    # Typed attribute hints for readers.
    runners: Any
    config: Any
    identity: Any
    users: Any
    groups: Any
    orgs: Any
    events: Any


class Actor:
    """A caller (user token) with its identity resolved through the API."""

    def __init__(self, server, token: str, email: str | None = None):
        self.server = server
        self.token = token
        self.email = email
        me = self.api().identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
        self.user_id = me.subject.id
        self.org_id = me.organization_id
        self.principal = me.subject.principal

    def api(self, **kwargs) -> Api:
        return Api(self.server.api_url, self.token, **kwargs)

    @property
    def runners(self):
        return self.api().runners

    @property
    def config(self):
        return self.api().config

    @property
    def identity(self):
        return self.api().identity

    @property
    def users(self):
        return self.api().users

    @property
    def groups(self):
        return self.api().groups

    @property
    def orgs(self):
        return self.api().orgs

    @property
    def events(self):
        return self.api().events

    # -- convenience -------------------------------------------------------

    def create_runner(self, name: str | None = None, provider: int = rc.RUNNER_PROVIDER_LINUX_HOST, **kw):
        return self.runners.create_runner(
            rp.CreateRunnerRequest(name=name or new_name("runner"), provider=provider, **kw)
        )

    def system_group(self, name: str) -> gp.Group:
        groups = list_all(
            lambda p: self.groups.list_groups(
                gp.ListGroupsRequest(pagination=p, filter=gp.ListGroupsRequest.Filter(system_managed=True))
            ),
            "groups",
        )
        for g in groups:
            if g.name == name:
                return g
        raise AssertionError(f"no system-managed group named {name!r} in {[g.name for g in groups]}")

    def all_runners(self, **filter_kw) -> list:
        flt = rp.ListRunnersRequest.Filter(**filter_kw) if filter_kw else None
        return list_all(
            lambda p: self.runners.list_runners(rp.ListRunnersRequest(pagination=p, filter=flt)),
            "runners",
        )

    def runner_ids(self, **filter_kw) -> set[str]:
        return {r.runner_id for r in self.all_runners(**filter_kw)}


def list_all(call: Callable[[pg.PaginationRequest], Message], field: str, page_size: int = 0,
             max_pages: int = 200) -> list:
    """Follow next_token until it is empty; return all items of `field`."""
    items: list = []
    token = ""
    seen_tokens = set()
    for _ in range(max_pages):
        resp = call(pg.PaginationRequest(page_size=page_size, token=token))
        items.extend(getattr(resp, field))
        token = resp.pagination.next_token
        if not token:
            return items
        assert token not in seen_tokens, f"pagination loops: token {token!r} returned twice"
        seen_tokens.add(token)
    raise AssertionError(f"pagination did not end after {max_pages} pages")


def error_text(err: ConnectError) -> str:
    """The message plus what the details say (buf.validate.Violations decoded)."""
    parts = [err.message or ""]
    for d in err.details:
        parts.append(d.type_name)
        if d.type_name == "buf.validate.Violations":
            try:
                v = validate_pb2.Violations.FromString(d.message_bytes)
            except Exception as e:  # pragma: no cover - diagnostic only
                parts.append(f"<undecodable Violations: {e}>")
                continue
            for viol in v.violations:
                path = ".".join(el.field_name for el in viol.field.elements)
                parts.append(f"{path} [{viol.constraint_id}] {viol.message}")
    return " | ".join(parts)


def violation_fields(err: ConnectError) -> list[str]:
    out = []
    for d in err.details:
        if d.type_name == "buf.validate.Violations":
            v = validate_pb2.Violations.FromString(d.message_bytes)
            for viol in v.violations:
                out.append(".".join(el.field_name for el in viol.field.elements))
    return out


def expect_error(code: Code, fn: Callable, *args, **kwargs) -> ConnectError:
    """Call fn and assert that it fails with a ConnectError of `code`."""
    try:
        result = fn(*args, **kwargs)
    except ConnectError as e:
        assert e.code == code, f"expected {code.value}, got {e.code.value}: {error_text(e)}"
        return e
    pytest.fail(f"expected {code.value}, call succeeded with {type(result).__name__}: {result}")


def expect_any_error(fn: Callable, *args, codes: Iterable[Code] | None = None, **kwargs) -> ConnectError:
    try:
        result = fn(*args, **kwargs)
    except ConnectError as e:
        if codes is not None:
            allowed = set(codes)
            assert e.code in allowed, (
                f"expected one of {[c.value for c in allowed]}, got {e.code.value}: {error_text(e)}"
            )
        return e
    pytest.fail(f"expected an error, call succeeded with {type(result).__name__}: {result}")


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def names_field(err: ConnectError, field: str) -> bool:
    """True when the error message or its details name `field` (snake_case or lowerCamel)."""
    text = error_text(err)
    return field in text or camel(field) in text
