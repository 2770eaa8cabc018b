"""The AWS query protocol as localcloud needs it: identify a request, read its parameters, write
XML responses and AWS-shaped errors (autoscaling and cloudformation speak this protocol)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

NAMESPACES = {
    "autoscaling": "http://autoscaling.amazonaws.com/doc/2011-01-01/",
    "cloudformation": "http://cloudformation.amazonaws.com/doc/2010-05-15/",
}


class AwsError(Exception):
    """An error to return to the caller exactly as AWS would (code, message, HTTP status)."""

    def __init__(self, code: str, message: str, status: int = 400, sender: bool = True) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.sender = sender


def validation_error(message: str) -> AwsError:
    """The ``ValidationError`` AWS returns for bad input and unknown groups/stacks."""
    return AwsError("ValidationError", message)


@dataclass
class ApiRequest:
    """One incoming AWS API request, identified."""

    service: str
    action: str
    region: str
    params: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``service:Action``, the key of the API call counter."""
        return f"{self.service}:{self.action}"

    def get(self, name: str, default: str | None = None) -> str | None:
        """A scalar parameter."""
        return self.params.get(name, default)

    def get_int(self, name: str) -> int | None:
        """An integer parameter, or None when absent."""
        value = self.params.get(name)
        if value is None or value == "":
            return None
        try:
            return int(value)
        except ValueError:
            raise validation_error(f"{name} must be an integer, got {value!r}") from None

    def get_bool(self, name: str) -> bool | None:
        """A boolean parameter, or None when absent."""
        value = self.params.get(name)
        return None if value is None else value.lower() == "true"

    def members(self, name: str) -> list[Any]:
        """A list parameter (``Name.member.N`` scalars or ``Name.member.N.Field`` structures)."""
        return members(self.params, name)

    def struct(self, name: str) -> dict[str, Any]:
        """A structure parameter (``Name.Field`` and nested ``Name.Field.member.N``)."""
        return struct(self.params, name)


def identify(environ: dict[str, Any], body: bytes, default_region: str) -> ApiRequest:
    """Work out service, action, region and (for the query protocol) parameters of a request."""
    service, region = "unknown", default_region
    auth = environ.get("HTTP_AUTHORIZATION", "")
    if "Credential=" in auth:
        try:
            scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/")
            region, service = scope[2], scope[3].lower()
        except IndexError:
            pass
    target = environ.get("HTTP_X_AMZ_TARGET")
    content_type = environ.get("CONTENT_TYPE", "")
    params: dict[str, str] = {}
    if target:
        action = target.rsplit(".", 1)[-1]
    elif "x-www-form-urlencoded" in content_type:
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", environ.get("REQUEST_METHOD", "GET"))
    else:
        query = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        action = query.get("Action") or environ.get("REQUEST_METHOD", "GET")
        if "Action" in query:
            params = query
    return ApiRequest(service=service, action=action, region=region, params=params)


def members(params: dict[str, str], name: str) -> list[Any]:
    """Decode ``name.member.N[...]`` into a list of scalars or dicts, ordered by N."""
    prefix = f"{name}.member."
    items: dict[int, Any] = {}
    for key, value in params.items():
        if not key.startswith(prefix):
            continue
        rest = key[len(prefix):]
        index_text, _, tail = rest.partition(".")
        if not index_text.isdigit():
            continue
        index = int(index_text)
        if not tail:
            items[index] = value
        else:
            items.setdefault(index, {})
            if isinstance(items[index], dict):
                _set_path(items[index], tail, value)
    return [_finish(items[i]) for i in sorted(items)]


def struct(params: dict[str, str], name: str) -> dict[str, Any]:
    """Decode ``name.Field...`` into a dict."""
    prefix = f"{name}."
    out: dict[str, Any] = {}
    for key, value in params.items():
        if key.startswith(prefix):
            _set_path(out, key[len(prefix):], value)
    return _finish(out)


def _set_path(target: dict[str, Any], path: str, value: str) -> None:
    parts = path.split(".")
    node = target
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def _finish(node: Any) -> Any:
    """Turn ``{"member": {"1": x, "2": y}}`` nodes into lists, recursively."""
    if not isinstance(node, dict):
        return node
    if set(node) == {"member"} and isinstance(node["member"], dict):
        entries = node["member"]
        return [_finish(entries[k]) for k in sorted(entries, key=lambda k: int(k) if k.isdigit() else 0)]
    return {k: _finish(v) for k, v in node.items()}


def to_xml(value: Any, tag: str) -> str:
    """Serialise plain data as query-protocol XML (lists become ``<member>`` elements)."""
    if value is None:
        return ""
    if isinstance(value, dict):
        inner = "".join(to_xml(v, k) for k, v in value.items())
        return f"<{tag}>{inner}</{tag}>"
    if isinstance(value, (list, tuple)):
        inner = "".join(to_xml(v, "member") for v in value)
        return f"<{tag}>{inner}</{tag}>"
    if isinstance(value, bool):
        return f"<{tag}>{'true' if value else 'false'}</{tag}>"
    if isinstance(value, datetime):
        return f"<{tag}>{value.strftime('%Y-%m-%dT%H:%M:%S.%f')[:-3]}Z</{tag}>"
    return f"<{tag}>{escape(str(value))}</{tag}>"


def response_xml(service: str, action: str, result: dict[str, Any] | None) -> bytes:
    """A complete successful response document for ``action``."""
    ns = NAMESPACES.get(service, "")
    inner = to_xml(result or {}, f"{action}Result") if result else f"<{action}Result/>"
    meta = f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
    return f'<{action}Response xmlns="{ns}">{inner}{meta}</{action}Response>'.encode()


def error_xml(service: str, error: AwsError) -> bytes:
    """An AWS query-protocol error document."""
    ns = NAMESPACES.get(service, "")
    kind = "Sender" if error.sender else "Receiver"
    return (
        f'<ErrorResponse xmlns="{ns}"><Error><Type>{kind}</Type><Code>{escape(error.code)}</Code>'
        f"<Message>{escape(error.message)}</Message></Error><RequestId>{uuid.uuid4()}</RequestId>"
        "</ErrorResponse>"
    ).encode()
