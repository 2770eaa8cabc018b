"""Secrets in pillar only during the provisioning window (Phoenix).

Pillar holds references (SSM Parameter Store names); this ext_pillar compiles their **values** on the
master, for one minion, only while

* the master's lifecycle ledger has an **in-flight LAUNCHING action** for that minion's instance id, and
* AWS says that instance is **Pending:Wait** in the ledger action's Auto Scaling group.

Any other minion, and the same minion after ``CONTINUE``/``ABANDON``, gets ``{}`` from it. Nothing is
cached by this module: every compile asks the ledger and AWS again. Salt sends the compiled pillar
encrypted to that minion alone. Never pass secrets as inline pillar (``pillar=...``): inline pillar lands in
the job publish, the job cache and the orchestration's events.

Setup
-----
Master config (see ``conf/master.d/phoenix-secrets.conf`` in the repository for the complete, tested file):

.. code-block:: yaml

    ext_pillar:
      - phoenix_secrets:
          prefix: /phoenix/          # only parameters under this path may be referenced
          require_secure: true       # refuse String/StringList parameters
    phoenix:
      aws:
        region: eu-west-1            # the master's AWS settings (never read from pillar here)
      lifecycle:
        ledger: /var/cache/salt/master/phoenix/lifecycle.sqlite   # default: <cachedir>/phoenix/lifecycle.sqlite

    # nothing may store compiled pillar (it would hold the values):
    pillar_cache: false
    minion_data_cache: false         # when true (Salt's default!) every compiled pillar is written to the
                                     # master cache (bank "pillar") even with pillar_cache false
    enforce_mine_cache: true         # keep the mine (inventory host keys) without the minion data cache
    gpg_cache: false

Minion config: ``minion_pillar_cache: false`` and ``cache_jobs: false`` (both Salt's defaults).

Pillar (references only):

.. code-block:: yaml

    phoenix:
      secrets:
        ssm:
          deploy_token: /phoenix/web/deploy-token

Compiled for a minion inside the window:

.. code-block:: yaml

    phoenix:
      secrets:
        values:
          deploy_token: <decrypted SecureString>

States read the values by name (``deployed_commit`` reads ``phoenix:deploy:token_secret``) inside an
execution module; never render a value into SLS with Jinja: the rendered high data is cached on the
minion (``highstate.cache.p``).

Events on the master bus: ``phoenix/secrets/<minion id>/granted`` (names), ``.../refused`` (reason,
names), ``.../failed`` (reason). Never a value.
"""

from __future__ import annotations

import logging
import os
from typing import Any

try:
    import phoenix.provision.secrets as _secrets
    import phoenix.saltglue

    HAS_PHOENIX = True
    IMPORT_ERROR = ""
except ImportError as exc:  # pragma: no cover
    HAS_PHOENIX = False
    IMPORT_ERROR = str(exc)

log = logging.getLogger(__name__)

__virtualname__ = "phoenix_secrets"


def __virtual__():
    if not HAS_PHOENIX:
        return (False, f"phoenix_secrets: the phoenix package must be importable: {IMPORT_ERROR}")
    return __virtualname__


def _ledger() -> Any:
    """The lifecycle ledger at the path the engine uses (``phoenix:lifecycle:ledger`` in the master config)."""
    try:
        from phoenix.lifecycle.ledger import Ledger
        from phoenix.lifecycle.options import options_from

        path = options_from(phoenix.saltglue.settings(__opts__, None, "phoenix:lifecycle"),
                            __opts__.get("cachedir")).ledger
    except (ImportError, ValueError) as exc:
        log.error("phoenix_secrets: the lifecycle ledger is not usable (%s): no secrets compiled", exc)
        return None
    if not os.path.exists(path):
        log.info("phoenix_secrets: no ledger at %s yet: no secrets compiled", path)
        return None
    return Ledger(path)


def ext_pillar(minion_id: str, pillar: Any, prefix: str | None = "/phoenix/", require_secure: bool = True,
               **kwargs: Any) -> dict[str, Any]:
    """
    The secret values referenced under ``phoenix:secrets:ssm`` for ``minion_id``, or ``{}`` outside its
    provisioning window.
    """
    emit = phoenix.saltglue.emitter(__opts__)

    def notify(outcome: str, data: dict[str, Any]) -> None:
        phoenix.saltglue.fire(emit, f"phoenix/secrets/{minion_id}/{outcome}", {"minion": minion_id, **data}, log)

    try:
        aws = phoenix.saltglue.aws(__opts__, None)
    except Exception as exc:  # noqa: BLE001 - a misconfigured master compiles nothing, loudly
        notify("failed", {"reason": f"secrets: AWS is not configured on the master: {exc}"})
        return {}
    ledger = _ledger()
    return _secrets.compile_for(minion_id, pillar, ledger, aws, prefix=prefix, require_secure=bool(require_secure),
                                notify=notify)
