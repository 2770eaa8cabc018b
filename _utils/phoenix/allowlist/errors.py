"""Errors of the allowlist pipeline. Every message names the input that caused it and what to do."""


class AllowlistError(Exception):
    """Base class: the allowlist could not be produced or installed; nothing was changed."""


class ExtractError(AllowlistError):
    """The app's routes could not be read (import failed, timeout, no rules, bad spec)."""


class RuleError(AllowlistError):
    """A rule of the app cannot be expressed safely in NGINX (host rules, odd converters, ...)."""


class ConfigError(AllowlistError):
    """The NGINX configuration is missing, unparseable, or does not reference the allowlist."""


class ValidationError(AllowlistError):
    """``nginx -t`` rejected the configuration with the candidate in place."""


class ReloadError(AllowlistError):
    """``nginx -s reload`` failed after ``nginx -t`` passed (NGINX not running, wrong pid file)."""
