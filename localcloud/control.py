"""The control interface over HTTP, under ``/_localcloud/`` (JSON in, JSON out).

GET  /_localcloud/health                      -> {"ok": true, "endpoint": ..., "region": ...}
GET  /_localcloud/clock                       -> {"now": epoch, "iso": ..., "rate": r}
POST /_localcloud/clock/advance  {"seconds"}  -> {"now": epoch, "iso": ...}
GET  /_localcloud/timeline/<group>            -> {"group": g, "timeline": [...]}
GET  /_localcloud/api-calls[?reset=1]         -> {"calls": {"service:Action": n}}
GET  /_localcloud/instances[?group=g]         -> {"instances": [...]}
POST /_localcloud/instances/<id>/reboot       -> {"rebooting": bool} (as EC2 RebootInstances)
GET  /_localcloud/config                      -> {"boot_seconds": s, "region": r}
POST /_localcloud/config {"boot_seconds"}     -> {"boot_seconds": s, "region": r}
POST /_localcloud/reset                       -> {"ok": true}
GET  /_localcloud/identity/certificate        -> PEM text: verifies every instance identity document

Per instance, the stand-in for its metadata service at ``http://169.254.169.254`` (plain text, as IMDS
answers; 404 for an unknown or terminated instance):
GET  /_localcloud/imds/<id>/latest/dynamic/instance-identity/document    the exact signed bytes
GET  /_localcloud/imds/<id>/latest/dynamic/instance-identity/signature   base64 RSA/SHA-256 signature
GET  /_localcloud/imds/<id>/latest/meta-data/instance-id | local-ipv4 | placement/availability-zone
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

ControlResponse = tuple[str, list[tuple[str, str]], bytes]
IMDS_PREFIX = "/_localcloud/imds/"


class Control:
    """Routes control requests to the :class:`LocalCloud` Python API."""

    def __init__(self, cloud: "LocalCloud") -> None:
        self.cloud = cloud

    def handle(self, environ: dict[str, Any]) -> ControlResponse:
        """Answer one control request."""
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO", "").rstrip("/")
        query = {k: v[-1] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if method == "GET" and path == "/_localcloud/identity/certificate":
            return _text("200 OK", self.cloud.identity_certificate_pem.encode(), "application/x-pem-file")
        if path.startswith(IMDS_PREFIX):
            return self._imds(method, path[len(IMDS_PREFIX):])
        try:
            body = self._json_body(environ)
            return _json("200 OK", self._route(method, path, query, body))
        except KeyError as exc:
            return _json("404 Not Found", {"error": f"no such control resource: {exc.args[0]}"})
        except (ValueError, TypeError) as exc:
            return _json("400 Bad Request", {"error": str(exc)})

    def _route(self, method: str, path: str, query: dict[str, str], body: dict[str, Any]) -> Any:
        cloud = self.cloud
        if method == "GET" and path == "/_localcloud/health":
            return {"ok": True, "endpoint": cloud.endpoint, "region": cloud.region}
        if method == "GET" and path == "/_localcloud/clock":
            return {"now": cloud.clock.now(), "iso": cloud.clock.iso(), "rate": cloud.clock.rate}
        if method == "POST" and path == "/_localcloud/clock/advance":
            seconds = float(body.get("seconds", 0))
            now = cloud.advance(seconds)
            return {"now": now, "iso": cloud.clock.iso(now)}
        if method == "GET" and path.startswith("/_localcloud/timeline/"):
            group = path[len("/_localcloud/timeline/"):]
            return {"group": group, "timeline": cloud.timeline(group)}
        if method == "GET" and path == "/_localcloud/api-calls":
            return {"calls": cloud.api_calls(reset=query.get("reset") in ("1", "true"))}
        if method == "GET" and path == "/_localcloud/instances":
            return {"instances": cloud.instances(query.get("group"))}
        if method == "POST" and path.startswith("/_localcloud/instances/") and path.endswith("/reboot"):
            instance_id = path[len("/_localcloud/instances/"):-len("/reboot")]
            return {"instance_id": instance_id, "rebooting": cloud.reboot(instance_id)}
        if path == "/_localcloud/config" and method in ("GET", "POST"):
            if method == "POST" and "boot_seconds" in body:
                cloud.boot_seconds = float(body["boot_seconds"])
            return {"boot_seconds": cloud.boot_seconds, "region": cloud.region}
        if method == "POST" and path == "/_localcloud/reset":
            cloud.reset()
            return {"ok": True}
        raise KeyError(f"{method} {path}")

    def _imds(self, method: str, rest: str) -> ControlResponse:
        """One instance's metadata service (only for an instance that is still alive)."""
        instance_id, _, item = rest.partition("/")
        with self.cloud.lock:
            rec = self.cloud.fleet.records.get(instance_id)
            alive = rec is not None and rec.alive
            private_ip = rec.private_ip if rec is not None else None
        issued = self.cloud.identity.get(instance_id)
        if method != "GET" or not alive or issued is None:
            return _text("404 Not Found", b"Not Found")
        answers = {
            "latest/dynamic/instance-identity/document": issued.document,
            "latest/dynamic/instance-identity/signature": issued.signature.encode(),
            "latest/meta-data/instance-id": instance_id.encode(),
            "latest/meta-data/local-ipv4": (private_ip or "").encode(),
            "latest/meta-data/placement/availability-zone":
                json.loads(issued.document)["availabilityZone"].encode(),
        }
        body = answers.get(item)
        if body is None:
            return _text("404 Not Found", b"Not Found")
        return _text("200 OK", body)

    @staticmethod
    def _json_body(environ: dict[str, Any]) -> dict[str, Any]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if not length:
            return {}
        data = json.loads(environ["wsgi.input"].read(length) or b"{}")
        if not isinstance(data, dict):
            raise ValueError("the request body must be a JSON object")
        return data


def _json(status: str, data: Any) -> ControlResponse:
    body = json.dumps(data, default=str).encode()
    return status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))], body


def _text(status: str, body: bytes, content_type: str = "text/plain") -> ControlResponse:
    return status, [("Content-Type", content_type), ("Content-Length", str(len(body)))], body
