"""The one AWS client factory every Phoenix module goes through.

Settings come from (lowest to highest precedence) the minion/master config, the pillar and the
caller's keyword arguments, each as a plain ``phoenix:aws`` dict::

    phoenix:
      aws:
        region: eu-west-1
        profile: ops            # a named profile from ~/.aws/config (never keys in pillar)
        endpoint_url: http://127.0.0.1:5000   # only for localcloud / test endpoints
        max_attempts: 8         # botocore adaptive retry mode (throttling)
        connect_timeout: 5
        read_timeout: 30
        ambient_region: false   # true: take the region from AWS_DEFAULT_REGION / the profile instead

A region is required: without ``region`` (and without ``ambient_region: true``) every Phoenix AWS call is
refused, so a typo or a pillar that did not reach the minion can never send a rebuild to boto3's default
region and account.

Every call goes through :meth:`AWS.call`, which turns botocore failures into :class:`PhoenixAWSError`
naming the action, the resource and AWS's own message, and :class:`PhoenixEndpointError` when the
endpoint cannot be reached at all. Credentials are never logged or put in an error.
"""

from __future__ import annotations

import email.utils
import logging
import threading
from dataclasses import dataclass, fields, replace
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping

#: keys accepted under ``phoenix:aws``
SETTING_KEYS = ("region", "profile", "endpoint_url", "max_attempts", "connect_timeout", "read_timeout",
                "ambient_region")


class PhoenixAWSError(Exception):
    """An AWS call failed. ``action`` is the API operation (``UpdateStack``), ``resource`` what it was for."""

    def __init__(
        self,
        action: str,
        resource: str | None,
        message: str,
        code: str | None = None,
        service: str | None = None,
    ) -> None:
        self.action = action
        self.resource = resource
        self.message = message
        self.code = code
        self.service = service
        on = f" on {resource}" if resource else ""
        svc = f"{service}:" if service else ""
        c = f"{code}: " if code else ""
        super().__init__(f"AWS {svc}{action}{on} failed: {c}{message}")


class PhoenixEndpointError(PhoenixAWSError):
    """The AWS endpoint could not be reached (connection refused, DNS, timeout)."""


@dataclass(frozen=True)
class AWSSettings:
    """Where and how to reach AWS. Holds no secret: credentials come from the profile/environment."""

    region: str | None = None
    profile: str | None = None
    endpoint_url: str | None = None
    max_attempts: int = 8
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    ambient_region: bool = False

    def describe(self) -> str:
        """Human description for error messages and logs (no secrets)."""
        where = self.endpoint_url or "the default AWS endpoint"
        return f"{where} (region {self.region or 'from environment'}, profile {self.profile or 'default'})"


def _coerce(key: str, value: Any) -> Any:
    if value is None or value == "":
        return None
    if key == "max_attempts":
        return int(value)
    if key in ("connect_timeout", "read_timeout"):
        return float(value)
    if key == "ambient_region":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"phoenix:aws:ambient_region: expected true or false, got {value!r}")
    return str(value)


NO_REGION = ("no AWS region configured: set phoenix:aws:region in pillar (or in the minion/master config), "
             "or set phoenix:aws:ambient_region: true to use AWS_DEFAULT_REGION / the profile's region")


def require_region(settings: AWSSettings) -> AWSSettings:
    """``settings`` when they name a region (or allow the ambient one); ``ValueError`` otherwise."""
    if not settings.region and not settings.ambient_region:
        raise ValueError(NO_REGION)
    return settings


def settings_from(*sources: Mapping[str, Any] | None) -> AWSSettings:
    """Merge ``phoenix:aws``-shaped dicts; later sources win, ``None``/empty values are ignored.

    Unknown keys raise ``ValueError`` naming the key, so a typo in pillar does not silently point
    Phoenix at the wrong account or region.
    """
    values: dict[str, Any] = {}
    for source in sources:
        if not source:
            continue
        if not isinstance(source, Mapping):
            raise ValueError(f"phoenix:aws must be a mapping, got {type(source).__name__}")
        for key, value in source.items():
            if key not in SETTING_KEYS:
                if key in ("aws_access_key_id", "aws_secret_access_key", "key", "keyid", "secret"):
                    raise ValueError(
                        f"phoenix:aws:{key}: credentials are not read from config or pillar; use "
                        "phoenix:aws:profile or the instance role"
                    )
                raise ValueError(f"unknown setting phoenix:aws:{key} (known: {', '.join(SETTING_KEYS)})")
            coerced = _coerce(key, value)
            if coerced is not None:
                values[key] = coerced
    return AWSSettings(**values)


_SENSITIVE = threading.local()
#: botocore loggers that write request parameters or response bodies at DEBUG level
BODY_LOGGERS = ("botocore.parsers", "botocore.endpoint")


class _HideBodies(logging.Filter):
    """Drops botocore's request/response body records while this thread makes a sensitive call."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(_SENSITIVE, "on", False)


_HIDE = _HideBodies()
for _name in BODY_LOGGERS:
    logging.getLogger(_name).addFilter(_HIDE)


def _operation_name(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


# boto3 sessions shared by every AWS adapter of this process, per (profile, region). A new session parses
# botocore's service models again (EC2's alone is megabytes of JSON): on a loaded master that took 1-4 s
# for each provisioning step that talks to AWS. Sessions are not thread-safe, so clients are created
# under the lock; clients themselves are. A session resolves its credentials once and keeps them
# (refreshable ones, such as an instance profile's or an assumed role's, refresh themselves).
_SESSIONS: dict[tuple[str | None, str | None], Any] = {}
_SESSIONS_LOCK = threading.Lock()


class AWS:
    """Client factory and call wrapper. One instance per Salt call; clients are cached per service, and
    the boto3 session behind them per process (see ``_SESSIONS``)."""

    def __init__(self, settings: AWSSettings, session: Any = None) -> None:
        self.settings = settings
        self._session = session
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.calls = 0
        self._server_date: datetime | None = None

    # -- clients ---------------------------------------------------------------------------------
    def _get_session(self) -> Any:
        """The session (lock held: ``_SESSIONS_LOCK``)."""
        if self._session is None:
            import boto3
            import botocore.exceptions

            key = (self.settings.profile, self.settings.region)
            if key not in _SESSIONS:
                try:
                    _SESSIONS[key] = boto3.session.Session(
                        profile_name=self.settings.profile, region_name=self.settings.region
                    )
                except botocore.exceptions.ProfileNotFound as exc:
                    raise PhoenixAWSError(
                        "CreateSession", f"profile {self.settings.profile}", str(exc), "ProfileNotFound"
                    ) from None
            self._session = _SESSIONS[key]
        return self._session

    def client(self, service: str) -> Any:
        """A boto3 client for ``service`` with adaptive retries and this adapter's endpoint."""
        with self._lock, _SESSIONS_LOCK:
            if service not in self._clients:
                from botocore.config import Config

                session = self._get_session()
                region = self.settings.region or (session.region_name if self.settings.ambient_region else None)
                if not region:
                    raise PhoenixAWSError("CreateClient", service, NO_REGION, "NoRegion")
                config = Config(
                    region_name=region,
                    retries={"mode": "adaptive", "max_attempts": self.settings.max_attempts},
                    connect_timeout=self.settings.connect_timeout,
                    read_timeout=self.settings.read_timeout,
                )
                self._clients[service] = session.client(
                    service, endpoint_url=self.settings.endpoint_url, config=config
                )
            return self._clients[service]

    # -- calls -----------------------------------------------------------------------------------
    def call(self, service: str, method: str, resource: str | None = None, *, _sensitive: bool = False,
             **params: Any) -> dict[str, Any]:
        """Call ``client(service).<method>(**params)``; failures become :class:`PhoenixAWSError`.

        ``_sensitive=True`` (secrets in the request or the answer, e.g. SSM GetParameters with decryption):
        botocore's DEBUG records of request parameters and response bodies are dropped for this call, so a
        master or minion running at log level ``debug`` does not write the values to its log.
        """
        import botocore.exceptions as bex
        from botocore.parsers import ResponseParserError

        action = _operation_name(method)
        client = self.client(service)
        self.calls += 1
        previous = getattr(_SENSITIVE, "on", False)
        _SENSITIVE.on = previous or _sensitive
        try:
            response = getattr(client, method)(**params)
        except bex.ClientError as exc:
            err = exc.response.get("Error", {})
            code = err.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            raise PhoenixAWSError(action, resource, err.get("Message") or str(exc), code, service) from None
        except (bex.EndpointConnectionError, bex.ConnectTimeoutError, bex.ConnectionClosedError) as exc:
            raise PhoenixEndpointError(
                action,
                resource,
                f"cannot reach {self.settings.describe()}: {exc}. Check phoenix:aws:endpoint_url / region "
                "and the network",
                "EndpointUnreachable",
                service,
            ) from None
        except bex.ReadTimeoutError as exc:
            raise PhoenixEndpointError(
                action, resource, f"no answer from {self.settings.describe()} in time: {exc}", "ReadTimeout", service
            ) from None
        except bex.NoCredentialsError:
            raise PhoenixAWSError(
                action,
                resource,
                f"no AWS credentials found for {self.settings.describe()}: set phoenix:aws:profile, an "
                "instance role, or the AWS_* environment variables",
                "NoCredentials",
                service,
            ) from None
        except bex.ParamValidationError as exc:
            raise PhoenixAWSError(action, resource, str(exc), "ParamValidation", service) from None
        except ResponseParserError as exc:
            # typically an HTTP 500 page: an endpoint that does not implement the action
            first = str(exc).splitlines()[0]
            raise PhoenixAWSError(action, resource, f"unreadable answer from the endpoint: {first}",
                                  "BadResponse", service) from None
        except bex.BotoCoreError as exc:
            raise PhoenixAWSError(action, resource, str(exc), type(exc).__name__, service) from None
        finally:
            _SENSITIVE.on = previous
        self._note_date(response)
        return response

    def paginate(
        self, service: str, method: str, key: str, resource: str | None = None, **params: Any
    ) -> list[Any]:
        """Follow ``NextToken`` pages of ``method`` and concatenate ``response[key]``."""
        items: list[Any] = []
        token: str | None = None
        for _ in range(1000):
            page_params = dict(params)
            if token:
                page_params["NextToken"] = token
            response = self.call(service, method, resource, **page_params)
            items.extend(response.get(key, []))
            token = response.get("NextToken")
            if not token:
                return items
        raise PhoenixAWSError(_operation_name(method), resource, "more than 1000 pages", "TooManyPages", service)

    # -- time ------------------------------------------------------------------------------------
    def _note_date(self, response: Mapping[str, Any]) -> None:
        header = response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        if header:
            try:
                self._server_date = email.utils.parsedate_to_datetime(header).astimezone(timezone.utc)
            except (TypeError, ValueError):
                pass

    def server_time(self) -> datetime:
        """AWS's clock as of the last response (``Date`` header), else the local clock.

        Instance ages are computed against AWS's clock so a skewed minion clock (or localcloud's
        simulated clock) does not make every instance look too old or too young.
        """
        return self._server_date or datetime.now(timezone.utc)


def with_overrides(settings: AWSSettings, **overrides: Any) -> AWSSettings:
    """A copy of ``settings`` with the non-``None`` ``overrides`` applied."""
    known = {f.name for f in fields(AWSSettings)}
    clean = {k: _coerce(k, v) for k, v in overrides.items() if k in known and v is not None}
    return replace(settings, **clean)


def first_error_line(exc: BaseException) -> str:
    """The first line of an exception's message (for event payloads)."""
    return (str(exc).splitlines() or [type(exc).__name__])[0]


__all__: Iterable[str] = [
    "AWS",
    "AWSSettings",
    "PhoenixAWSError",
    "PhoenixEndpointError",
    "SETTING_KEYS",
    "settings_from",
    "require_region",
    "with_overrides",
]
