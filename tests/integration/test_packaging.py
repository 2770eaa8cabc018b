"""Both ways in: the repo in file_roots with saltutil.sync_all, and `pip install .` (entry point)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from devtools.saltcall import salt_call, write_minion_config
from devtools.site import make_site
from tests.integration.conftest import bare_env


_bare_env = bare_env


def test_the_test_venv_has_no_installed_phoenix():
    """Precondition for the file_roots test: phoenix is importable only through what Salt syncs."""
    proc = subprocess.run([sys.executable, "-c", "import phoenix"], capture_output=True, env=_bare_env(),
                          cwd="/")
    assert proc.returncode != 0


def test_file_roots_and_sync_all(repo, tmp_path):
    conf = write_minion_config(tmp_path, repo, file_roots=[str(repo)], loader_dirs=False)
    code, synced, err = salt_call(conf, "saltutil.sync_all", env=_bare_env())
    assert code == 0, err
    assert "modules.nginx_whitelist" in synced["modules"] and "states.nginx_whitelist" in synced["states"]
    assert "modules.rebuild" in synced["modules"] and "states.rebuild" in synced["states"]
    assert any(u.startswith("utils.phoenix") for u in synced["utils"]), synced["utils"]
    code, out, err = salt_call(conf, "nginx_whitelist.render", "/etc/nginx/conf.d/x.conf", "demo_app:app",
                               f"cwd={repo / 'tests' / 'apps'}", env=_bare_env())
    assert code == 0, err
    assert "map " in out["maps"]
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)
    code, out, err = salt_call(conf, "state.single", "nginx_whitelist.managed", f"name={site.maps}",
                               "app=demo_app:app", f"cwd={repo / 'tests' / 'apps'}", f"config={site.config}",
                               env=_bare_env())
    (ret,) = out.values()
    assert ret["result"] is True, ret["comment"]


def test_pip_install_entry_point(installed, repo, tmp_path):
    python = str(installed / "bin" / "python")
    where = subprocess.run([python, "-c", "import phoenix, phoenix.loader as l; print(phoenix.__file__); print(l.get_dirs())"],
                           capture_output=True, text=True, env=_bare_env(), cwd="/")
    assert where.returncode == 0, where.stderr
    assert str(installed) in where.stdout and "saltext/modules" in where.stdout
    conf = write_minion_config(tmp_path, repo, file_roots=[str(tmp_path / "empty")], loader_dirs=False)
    (tmp_path / "empty").mkdir()
    code, out, err = salt_call(conf, "nginx_whitelist.render", "/etc/nginx/conf.d/x.conf", "demo_app:app",
                               f"cwd={repo / 'tests' / 'apps'}", f"python={sys.executable}",  # the app's, with Flask
                               python=python, env=_bare_env())
    assert code == 0, err
    assert "map " in out["maps"]
    code, out, err = salt_call(conf, "sys.list_state_functions", "nginx_whitelist", "rebuild", python=python,
                               env=_bare_env())
    assert out == ["nginx_whitelist.managed", "rebuild.fresh"], (out, err)
    code, out, err = salt_call(conf, "sys.list_functions", "rebuild", python=python, env=_bare_env())
    assert {"rebuild.cycle", "rebuild.status", "rebuild.preflight"} <= set(out), (out, err)


def test_pip_install_command(installed, repo, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)
    cmd = [str(installed / "bin" / "phoenix-allowlist"), str(site.maps), "demo_app:app", "--python", sys.executable,
           "--cwd", str(repo / "tests" / "apps"), "--config", str(site.config)]
    test = subprocess.run(cmd + ["--test"], capture_output=True, text=True, env=_bare_env())
    assert test.returncode == 2 and f"+++ {site.maps}" in test.stdout and not site.maps.exists(), test.stderr
    run = subprocess.run(cmd, capture_output=True, text=True, env=_bare_env())
    assert run.returncode == 0, run.stderr
    assert "The allowlist was updated" in run.stdout and "Previous" not in run.stdout  # a first write
    again = subprocess.run(cmd, capture_output=True, text=True, env=_bare_env())
    assert again.returncode == 0 and again.stdout.startswith("The allowlist is up to date") and again.stderr == ""
    switched = subprocess.run(cmd + ["--no-strict-paths", "--intercept-errors"], capture_output=True, text=True,
                              env=_bare_env())
    assert switched.returncode == 0 and "proxy_intercept_errors on;" in site.gate.read_text(), switched.stderr
    assert "strict paths off" in switched.stdout and "$request_uri" not in site.maps.read_text()
    bad = subprocess.run(cmd[:2] + ["broken_app:app"] + cmd[3:], capture_output=True, text=True, env=_bare_env())
    assert bad.returncode == 1 and "boom" in bad.stderr and bad.stdout == ""
