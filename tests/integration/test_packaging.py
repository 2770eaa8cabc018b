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
    assert "modules.phoenix_patches" in synced["modules"]
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
    code, out, err = salt_call(conf, "sys.list_functions", "phoenix_patches", python=python, env=_bare_env())
    assert out == ["phoenix_patches.pending", "phoenix_patches.simulate_upgrade"], (out, err)


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


# -- the master side (runners, engines) ----------------------------------------------------------------
def _master_conf(tmp_path: Path, file_roots: list[str]) -> Path:
    """A master config under ``tmp_path`` (no daemon: salt-run runs runners in its own process)."""
    import getpass

    import yaml

    root = tmp_path / "master"
    (root / "cache" / "proc").mkdir(parents=True)
    conf = tmp_path / "master-conf"
    conf.mkdir()
    (conf / "master").write_text(yaml.safe_dump({
        "root_dir": str(root), "file_roots": {"base": file_roots}, "pki_dir": "pki", "cachedir": "cache",
        "sock_dir": "run", "log_file": "master.log", "user": getpass.getuser()}))
    return conf


def _salt_run(conf: Path, *args: str, python: str = sys.executable):
    import json

    proc = subprocess.run([python, "-c", "import salt.scripts; salt.scripts.salt_run()", "-c", str(conf), *args,
                           "--out", "json"], capture_output=True, text=True, env=_bare_env(), cwd="/", timeout=300)
    try:
        out = json.loads(proc.stdout)
    except ValueError:
        out = proc.stdout
    return proc.returncode, out, proc.stderr


def test_master_file_roots_and_sync_all(repo, tmp_path):
    conf = _master_conf(tmp_path, [str(repo)])
    code, synced, err = _salt_run(conf, "saltutil.sync_all")
    assert code == 0, err
    assert "runners.lifecycle" in synced["runners"] and "engines.lifecycle" in synced["engines"], synced
    code, out, err = _salt_run(conf, "lifecycle.status")
    assert code == 0 and out == [], (out, err)


def test_pip_install_master_side(installed, tmp_path):
    python = str(installed / "bin" / "python")
    (tmp_path / "empty").mkdir()
    conf = _master_conf(tmp_path, [str(tmp_path / "empty")])
    code, out, err = _salt_run(conf, "lifecycle.status", python=python)
    assert code == 0 and out == [], (out, err)
    probe = ("import salt.config, salt.loader; opts = salt.config.master_config(%r); "
             "print('lifecycle.start' in salt.loader.engines(opts, {}, {}, {}, {}))" % str(conf / "master"))
    proc = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=_bare_env(), cwd="/")
    assert proc.stdout.strip().splitlines()[-1] == "True", proc.stdout + proc.stderr
