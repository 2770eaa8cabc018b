"""The HTTP layer in front of moto: one endpoint for every service.

Each request is identified (service, action), counted, and either handled by a localcloud
interceptor or passed to moto's own WSGI application running in the same process. Requests under
``/_localcloud/`` go to the control interface instead.
"""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

from localcloud.awsquery import ApiRequest, AwsError, error_xml, identify

if TYPE_CHECKING:
    from localcloud.cloud import LocalCloud

log = logging.getLogger(__name__)

Response = tuple[str, list[tuple[str, str]], bytes]
Forward = Callable[[], Response]
Interceptor = Callable[[ApiRequest, Forward], Response]

AFFECTS_FLEET = frozenset({"autoscaling", "cloudformation", "ec2"})


class Frontend:
    """WSGI application: control routes, interceptors, then moto."""

    def __init__(self, cloud: "LocalCloud") -> None:
        self.cloud = cloud
        self.moto_app = DomainDispatcherApplication(create_backend_app)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/moto-api/reset" and environ.get("REQUEST_METHOD") == "POST":
            path = "/_localcloud/reset"  # moto's own reset must clear localcloud's tables too
            environ["PATH_INFO"] = path
        if path.startswith("/_localcloud"):
            status, headers, body = self.cloud.control.handle(environ)
            start_response(status, headers)
            return [body]
        body = _read_body(environ)
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        request = identify(environ, body, self.cloud.region)
        if not path.startswith("/moto-api"):
            self.cloud.calls.add(request.key)
        handler = self.cloud.interceptors.get(request.key)
        if handler is None and request.service not in AFFECTS_FLEET:
            # plain services (SQS long polls included) never wait for the simulator's lock
            status, headers, out = self.forward(environ)
            start_response(status, headers)
            return [out]
        with self.cloud.lock:
            try:
                if handler is not None:
                    status, headers, out = handler(request, lambda: self.forward(environ))
                else:
                    status, headers, out = self.forward(environ)
            except AwsError as exc:
                status, headers, out = aws_error(request.service, exc)
            except Exception as exc:  # report like AWS's InternalFailure instead of dropping the socket
                log.exception("localcloud failed on %s", request.key)
                status, headers, out = aws_error(request.service, AwsError(
                    "InternalFailure", f"localcloud: {type(exc).__name__}: {exc}", 500, sender=False))
            if request.service in AFFECTS_FLEET:
                try:
                    self.cloud.fleet.reconcile()
                except Exception:  # never fail the caller's request for a bookkeeping problem
                    log.exception("reconcile after %s failed", request.key)
        start_response(status, headers)
        return [out]

    def forward(self, environ: dict[str, Any]) -> Response:
        """Pass the request to moto and capture its response."""
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, list(headers)
            return lambda data: None

        environ["wsgi.input"].seek(0)
        result = self.moto_app(environ, start_response)
        try:
            body = b"".join(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(body))))
        return captured["status"], headers, body


def _read_body(environ: dict[str, Any]) -> bytes:
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated"):
        return stream.read()
    return b""


def xml_response(body: bytes, status: str = "200 OK") -> Response:
    """A query-protocol XML response."""
    return status, [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))], body


def aws_error(service: str, error: AwsError) -> Response:
    """An error response in the query protocol's format."""
    reason = {400: "Bad Request", 404: "Not Found", 500: "Internal Server Error"}.get(error.status, "Error")
    return xml_response(error_xml(service, error), f"{error.status} {reason}")
