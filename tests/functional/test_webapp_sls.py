"""salt/webapp rendered by a real salt-call: production's defaults (packages, virtualenv, systemd, a
system user) and the shared-test-machine switches, in the order the allowlist needs. Applying it for real
is tests/integration/test_salt_instance.py (a minion applies it from a master, real NGINX)."""

from __future__ import annotations

import json

import pytest

from devtools.saltcall import salt_call, write_minion_config


def low_order(low: dict) -> list[str]:
    def order(state_id: str) -> int:
        (args,) = [v for k, v in low[state_id].items() if not k.startswith("__")]
        return next(a["order"] for a in args if isinstance(a, dict) and "order" in a)
    return sorted(low, key=order)


def arg(low: dict, state_id: str, name: str):
    (args,) = [v for k, v in low[state_id].items() if not k.startswith("__")]
    return next(a[name] for a in args if isinstance(a, dict) and name in a)


@pytest.fixture
def conf(repo, tmp_path):
    return write_minion_config(tmp_path, repo, extra={"grains": {"phoenix_private_ip": "10.0.1.23"}})


def test_production_defaults_install_packages_a_virtualenv_and_systemd_services(conf):
    code, low, err = salt_call(conf, "state.show_sls", "webapp", "pillar={}")
    assert code == 0, err
    assert low_order(low) == ["webapp-packages", "webapp-user", "webapp-runner", "webapp-app-files", "webapp-dirs",
                              "webapp-virtualenv", "webapp-requirements", "webapp-app-unit", "webapp-app",
                              "webapp-nginx-site", "webapp-allowlist", "webapp-nginx"]
    assert arg(low, "webapp-packages", "pkgs") == ["nginx-light", "python3-venv"]
    assert arg(low, "webapp-app-files", "name") == "/srv/webapp"
    allow = low["webapp-allowlist"]["nginx_whitelist"]
    assert arg(low, "webapp-allowlist", "python") == "/usr/local/lib/webapp/venv/bin/python"
    assert arg(low, "webapp-allowlist", "upstream") == "10.0.1.23:8000"
    assert arg(low, "webapp-allowlist", "config") == "/etc/nginx/nginx.conf"
    assert {"file": "webapp-nginx-site"} in next(a["require"] for a in allow if isinstance(a, dict) and "require" in a)
    watch = arg(low, "webapp-nginx", "watch")
    assert {"nginx_whitelist": "webapp-allowlist"} in watch and {"file": "webapp-nginx-site"} in watch
    assert "running" in low["webapp-nginx"]["service"] and "running" in low["webapp-app"]["service"]
    command = arg(low, "webapp-app-unit", "context")["command"]
    assert command.startswith("/usr/local/lib/webapp/venv/bin/python /usr/local/lib/webapp/serve.py "
                              "--host 10.0.1.23 --port 8000 --instance ")
    assert command.endswith(" --app-dir /srv/webapp --app 'webapp_app:create_app()'")
    assert "--no-debugger" not in command  # the sample app: debugger ON
    site = arg(low, "webapp-nginx-site", "context")
    assert site["listen"] == "10.0.1.23:80" and site["maps"] == "/etc/nginx/phoenix/webapp.allowlist.conf"


def test_test_machine_switches_keep_everything_under_root_dir_and_use_boot_scripts(conf, tmp_path):
    pillar = {"phoenix": {"webapp": {"under_root_dir": True, "manage_packages": False, "manage_user": False,
                                     "virtualenv": False, "service_manager": "script", "port": 8080,
                                     "nginx": {"main_config": True}, "debugger": False}}}
    code, low, err = salt_call(conf, "state.show_sls", "webapp", f"pillar={json.dumps(pillar)}")
    assert code == 0, err
    assert low_order(low) == ["webapp-runner", "webapp-app-files", "webapp-dirs", "webapp-app-script",
                              "webapp-app-restart",
                              "webapp-app", "webapp-nginx-main-config", "webapp-nginx-temp", "webapp-nginx-site",
                              "webapp-allowlist", "webapp-nginx-script", "webapp-nginx-reload", "webapp-nginx"]
    root = str(tmp_path / "salt-root")
    for state_id in ("webapp-app-files", "webapp-nginx-site", "webapp-app-script", "webapp-nginx-main-config"):
        assert arg(low, state_id, "name").startswith(root + "/"), state_id
    assert "--no-debugger" in arg(low, "webapp-app-script", "context")["start"]
    onchanges = arg(low, "webapp-nginx-reload", "onchanges")
    assert {"nginx_whitelist": "webapp-allowlist"} in onchanges and {"file": "webapp-nginx-site"} in onchanges


def test_the_app_can_come_from_the_deployed_checkout(repo, tmp_path):
    """source: deploy takes the app from phoenix:deploy:target after salt/deployed_commit's state (here a
    stand-in SLS with the same state id; the real one deploys the commit recorded in S3)."""
    stand_in = tmp_path / "roots" / "deployed_commit"
    stand_in.mkdir(parents=True)
    (stand_in / "init.sls").write_text("phoenix-deployed-commit:\n  test.succeed_without_changes: []\n")
    conf = write_minion_config(tmp_path, repo, file_roots=[str(repo / "salt"), str(tmp_path / "roots")],
                               extra={"grains": {"phoenix_private_ip": "10.0.1.23"}})
    pillar = {"phoenix": {"deploy": {"target": "/srv/checkout"},
                          "webapp": {"source": "deploy", "app": "shop.wsgi:create_app()"}}}
    code, low, err = salt_call(conf, "state.show_sls", "webapp", f"pillar={json.dumps(pillar)}")
    assert code == 0, err
    order = low_order(low)
    assert "webapp-app-files" not in order
    assert order.index("phoenix-deployed-commit") < order.index("webapp-allowlist")
    assert {"deployed_commit": "phoenix-deployed-commit"} in arg(low, "webapp-allowlist", "require")
    assert {"deployed_commit": "phoenix-deployed-commit"} in arg(low, "webapp-app", "watch")
    assert arg(low, "webapp-allowlist", "cwd") == "/srv/checkout"
    assert arg(low, "webapp-allowlist", "app") == "shop.wsgi:create_app()"
    assert arg(low, "webapp-app-unit", "context")["command"].endswith(
        " --app-dir /srv/checkout --app 'shop.wsgi:create_app()'")
    # a relative target is under the minion's root_dir (as deployed_commit resolves it); the commit header
    pillar["phoenix"]["deploy"]["target"] = "srv/checkout"
    pillar["phoenix"]["webapp"]["commit_header"] = "X-App-Commit"
    code, low, err = salt_call(conf, "state.show_sls", "webapp", f"pillar={json.dumps(pillar)}")
    assert code == 0, err
    checkout = str(tmp_path / "salt-root" / "srv" / "checkout")
    assert arg(low, "webapp-allowlist", "cwd") == checkout
    assert arg(low, "webapp-app-unit", "context")["command"].endswith(
        f" --app-dir {checkout} --app 'shop.wsgi:create_app()' --commit-header X-App-Commit")
    pillar["phoenix"]["deploy"] = {}
    code, ret, err = salt_call(conf, "state.apply", "webapp", f"pillar={json.dumps(pillar)}")
    (only,) = ret.values()
    assert code != 0 and "phoenix:deploy:target is not set" in only["name"]


def test_an_unknown_service_manager_fails_naming_the_pillar_key(conf):
    pillar = {"phoenix": {"webapp": {"service_manager": "upstart"}}}
    code, ret, err = salt_call(conf, "state.apply", "webapp", f"pillar={json.dumps(pillar)}")
    assert code != 0
    (only,) = ret.values()
    assert only["result"] is False and "phoenix:webapp:service_manager is upstart" in only["name"]
