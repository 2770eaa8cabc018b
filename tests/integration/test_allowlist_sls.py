"""salt/nginx_whitelist/init.sls: site config deployed -> allowlist -> service.running (watch)."""

from __future__ import annotations

import json

import pytest

from devtools.nginx import Nginx
from devtools.saltcall import salt_call, write_minion_config

pytestmark = pytest.mark.nginx


def _pillar(tmp_path, repo, **extra) -> str:
    cfg = {
        "name": "demo", "app": "demo_app:create_app()", "cwd": str(repo / "tests" / "apps"),
        "maps": str(tmp_path / "nginx" / "conf.d" / "demo.allowlist.conf"),
        "site_config": str(tmp_path / "nginx" / "sites" / "demo.conf"),
        "config": str(tmp_path / "nginx" / "nginx.conf"), "upstream": "127.0.0.1:5999",
        "listen": "127.0.0.1:8089", "server_name": "demo.test",
        "manage_package": False, "manage_service": False, **extra,
    }
    return json.dumps({"phoenix": {"nginx_whitelist": cfg}})


def test_order_of_the_highstate(repo, tmp_path):
    conf = write_minion_config(tmp_path, repo)
    code, low, err = salt_call(conf, "state.show_sls", "nginx_whitelist",
                               f"pillar={_pillar(tmp_path, repo, manage_package=True, manage_service=True)}")
    assert code == 0, err
    def order(state_id: str) -> int:
        (args,) = [v for k, v in low[state_id].items() if not k.startswith("__")]
        return next(a["order"] for a in args if isinstance(a, dict) and "order" in a)

    ids = sorted(low, key=order)
    assert ids == ["nginx-package", "nginx-site-config", "nginx-whitelist", "nginx-service"]
    whitelist = low["nginx-whitelist"]["nginx_whitelist"]
    assert {"file": "nginx-site-config"} in next(a["require"] for a in whitelist if isinstance(a, dict) and "require" in a)
    service = low["nginx-service"]["service"]
    watch = next(a["watch"] for a in service if isinstance(a, dict) and "watch" in a)
    assert {"nginx_whitelist": "nginx-whitelist"} in watch and {"file": "nginx-site-config"} in watch


def test_pillar_switches_reach_the_state(repo, tmp_path):
    conf = write_minion_config(tmp_path, repo)
    pillar = _pillar(tmp_path, repo, fast_path=False, strict_paths=False, intercept_errors=True)
    code, low, err = salt_call(conf, "state.show_sls", "nginx_whitelist", f"pillar={pillar}")
    assert code == 0, err
    args = {k: v for a in low["nginx-whitelist"]["nginx_whitelist"] if isinstance(a, dict) for k, v in a.items()}
    assert (args["fast_path"], args["strict_paths"], args["intercept_errors"]) == (False, False, True)


def test_apply_deploys_the_site_and_its_allowlist(repo, tmp_path):
    (tmp_path / "nginx" / "conf.d").mkdir(parents=True)
    ngx = Nginx(tmp_path / "nginx", f"include {tmp_path / 'nginx' / 'sites'}/*.conf;")
    conf = write_minion_config(tmp_path, repo)
    pillar = f"pillar={_pillar(tmp_path, repo)}"
    code, ret, err = salt_call(conf, "state.apply", "nginx_whitelist", "test=True", pillar)
    assert code == 0, (ret, err)
    assert not (tmp_path / "nginx" / "conf.d" / "demo.allowlist.conf").exists()
    (whitelist,) = [r for k, r in ret.items() if k.startswith("nginx_whitelist")]
    assert whitelist["result"] is None and "Warning: " in whitelist["comment"]  # site config not deployed yet
    code, ret, err = salt_call(conf, "state.apply", "nginx_whitelist", pillar)
    assert code == 0, (ret, err)
    assert all(r["result"] for r in ret.values()), ret
    site = (tmp_path / "nginx" / "sites" / "demo.conf").read_text()
    assert "demo.allowlist.gate" in site and "proxy_pass http://127.0.0.1:5999" in site
    assert ngx.test().returncode == 0
    code, ret, err = salt_call(conf, "state.apply", "nginx_whitelist", pillar)
    assert all(r["result"] is True and not r["changes"] for r in ret.values()), ret  # idempotent
