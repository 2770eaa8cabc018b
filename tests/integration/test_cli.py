"""The commands as a user runs them after ``pip install .`` (no extras): ``phoenix-allowlist`` and
``phoenix-localcloud`` through their console scripts, against a real NGINX and a real Flask app (issue 7, item 3).

The installed venv (``installed`` in conftest.py) has neither moto (the ``localcloud`` extra) nor Flask (the
app's own virtualenv has it): the app is imported with ``--python``, the test venv's interpreter, as the README
says.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.flaskapp import FlaskApp
from devtools.site import Site, make_site, request
from tests.integration.conftest import bare_env

pytestmark = pytest.mark.nginx

APP_PYTHON = sys.executable  # the app's interpreter: has Flask, unlike the installed venv


@pytest.fixture(scope="module")
def app(repo: Path):
    with FlaskApp("demo_app:app", repo / "tests" / "apps") as running:
        yield running


def run(installed: Path, command: str, *args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(installed / "bin" / command), *map(str, args)], capture_output=True, text=True,
                          env=bare_env(), timeout=120, stdin=subprocess.DEVNULL)


def allowlist_args(site, repo: Path, *extra: object) -> list[object]:
    return [site.maps, "demo_app:app", "--python", APP_PYTHON, "--cwd", repo / "tests" / "apps",
            "--config", site.config, "--prefix", site.root, *extra]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and "tmp" not in p.parts
            and p.suffix not in (".log", ".pid")}


def wait_for(predicate, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
    return value


# -- phoenix-localcloud ------------------------------------------------------------------------------
def test_localcloud_help_works_without_the_extra_and_running_names_it(installed):
    helped = run(installed, "phoenix-localcloud", "--help")
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: phoenix-localcloud ")
    assert "python -m" not in helped.stdout and "``" not in helped.stdout and "--agent-command" in helped.stdout
    started = run(installed, "phoenix-localcloud", "--port", "0")
    assert started.returncode == 1
    assert started.stderr.strip().splitlines() == [
        "phoenix-localcloud needs moto, which comes with the localcloud extra: pip install "
        "'phoenix-salt[localcloud]' (No module named 'moto')"]
    assert "Traceback" not in started.stderr and started.stdout == ""


def test_python_m_localcloud_names_itself(repo):
    helped = subprocess.run([sys.executable, "-m", "localcloud", "--help"], capture_output=True, text=True,
                            cwd=repo, timeout=60)
    assert helped.returncode == 0 and helped.stdout.startswith("usage: python -m localcloud "), helped.stderr


def test_readme_documents_the_extras():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for extra in ("[salt]", "[localcloud]", "[test]"):
        assert f".{extra}" in readme, extra


# -- phoenix-allowlist: import errors and the app's interpreter ---------------------------------------
def test_probe_without_the_apps_interpreter_says_it_is_needed_once(installed, repo):
    """The README's probe example without --python, after a plain install: Flask is in the app's venv only."""
    out = run(installed, "phoenix-allowlist", "--probe", "http://127.0.0.1:9", "demo_app:app",
              "--cwd", repo / "tests" / "apps")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("No module named 'flask'") == 1, out.stderr  # once, not twice
    assert "the app's own is needed" in out.stderr and "--python" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_readme_examples_pass_the_apps_interpreter():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    commands = re.findall(r"^phoenix-allowlist .*(?:\\\n.*)*", readme, re.MULTILINE)
    assert len(commands) >= 2
    for command in commands:
        assert "--python " in command, command


def test_probe_with_the_apps_interpreter_checks_the_live_nginx(installed, repo, app, tmp_path):
    site = make_site(tmp_path / "nginx", app.port)
    ngx = site.nginx(gated=True)
    assert run(installed, "phoenix-allowlist", *allowlist_args(site, repo)).returncode == 0
    with ngx.start(site.port):
        out = run(installed, "phoenix-allowlist", "--probe", f"http://127.0.0.1:{site.port}", "demo_app:app",
                  "--python", APP_PYTHON, "--cwd", repo / "tests" / "apps")
        assert out.returncode == 0, out.stdout + out.stderr
        assert re.search(r"^ok +GET +/console +404 expected refusal$", out.stdout, re.MULTILINE), out.stdout
        assert out.stdout.strip().splitlines()[-1].endswith("all as expected.")
        as_json = run(installed, "phoenix-allowlist", "--probe", f"http://127.0.0.1:{site.port}", "demo_app:app",
                      "--python", APP_PYTHON, "--cwd", repo / "tests" / "apps", "--json")
        assert json.loads(as_json.stdout)["ok"] is True


# -- phoenix-allowlist: writes, reloads, output, exit codes -------------------------------------------
def test_write_says_a_reload_is_needed_and_reload_applies_it(installed, repo, app, tmp_path):
    site = make_site(tmp_path / "nginx", app.port)
    # what was there before: an allowlist that lets everything through (same variable names)
    site.maps.write_text("# Phoenix allowlist for app (hand-written: allow all)\n"
                         "map $uri $phoenix_app_allow { default 1; }\n")
    site.gate.write_text("if ($phoenix_app_allow = 0) { return 404; }\n")
    with site.nginx(gated=True).start(site.port):
        assert request(site.port, "GET", "/console")[1] is True  # the debugger console reaches the app

        written = run(installed, "phoenix-allowlist", *allowlist_args(site, repo))
        assert written.returncode == 0, written.stderr
        assert f"+++ {site.maps}" in written.stdout and written.stderr == ""
        assert f"Previous version(s) kept: {site.maps}.previous, {site.gate}.previous." in written.stdout
        assert "NGINX serves the new allowlist only after a reload: run nginx -p " in written.stdout
        assert written.stdout.rstrip().endswith("-s reload (or use --reload next time).")
        assert request(site.port, "GET", "/console")[1] is True  # not reloaded: the old answer, as it says

        reloaded = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--reload"))
        assert reloaded.returncode == 0, reloaded.stderr
        assert "The allowlist is up to date" in reloaded.stdout
        assert f"NGINX reloaded: nginx -t passed on {site.config}, then nginx -p" in reloaded.stdout
        assert "only after a reload" not in reloaded.stdout
        wait_for(lambda: request(site.port, "GET", "/console")[:2] == (404, False), "the reload to take effect")
        assert request(site.port, "GET", "/login")[1] is True

        # nginx -t must pass before a reload: a live config nginx -t rejects is never reloaded
        live = site.config.read_text()
        site.config.write_text(live.replace("worker_connections 1024;", "worker_connections 1024; bogus_directive on;"))
        refused = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--reload"))
        site.config.write_text(live)
        assert refused.returncode == 3, refused.stdout + refused.stderr
        assert "error: NGINX was not reloaded and still serves its previous configuration: nginx -t failed on" in \
            refused.stderr and "bogus_directive" in refused.stderr
        assert request(site.port, "GET", "/console")[:2] == (404, False)


def test_reload_failure_after_a_write_is_exit_3_and_says_so(installed, repo, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)  # configured, never started: nothing to reload
    out = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--reload"))
    assert out.returncode == 3
    assert "The allowlist was updated and passed nginx -t" in out.stdout and "Previous" not in out.stdout
    assert "error: the allowlist files were written, but NGINX was not reloaded" in out.stderr
    assert "-s reload' failed" in out.stderr and site.maps.exists()


def test_json_output_and_exit_codes(installed, repo, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)
    pending = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--test", "--json"))
    assert pending.returncode == 2 and pending.stderr == ""
    doc = json.loads(pending.stdout)
    assert doc["result"] is None and doc["changes"]["files"] == [str(site.maps), str(site.gate)]
    assert doc["reload"] is None and not site.maps.exists()
    first = json.loads(run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--json")).stdout)
    assert first["result"] is True and first["reload_needed"] is True and "Previous" not in first["comment"]
    again = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--json"))
    assert again.returncode == 0 and json.loads(again.stdout)["reload_needed"] is False
    usage = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--test", "--reload"))
    assert usage.returncode == 64 and "cannot be combined with --test" in usage.stderr
    helped = run(installed, "phoenix-allowlist", "--help")
    assert helped.returncode == 0 and "exit status: 0 up to date" in helped.stdout


def test_import_error_is_printed_once_on_stderr(installed, repo, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)
    args = allowlist_args(site, repo, "--test")
    args[1] = "no_such_module:app"
    out = run(installed, "phoenix-allowlist", *args)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.count("No module named 'no_such_module'") == 1, out.stderr
    assert out.stderr.startswith("error: app 'no_such_module:app' failed to import")


# -- phoenix-allowlist: wrong upstream, typo'd maps path ---------------------------------------------
def test_wrong_upstream_fails_naming_what_was_looked_for_and_found(installed, repo, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)
    assert run(installed, "phoenix-allowlist", *allowlist_args(site, repo)).returncode == 0
    before = snapshot(site.root)
    for mode in ("--test", "--reload"):
        out = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--upstream", "127.0.0.1:5998", mode))
        assert out.returncode == 1, (mode, out.stdout, out.stderr)  # not "would be updated"
        assert out.stdout == "" and len(out.stderr.splitlines()) == 1
        assert "upstream '127.0.0.1:5998' is not passed to by any location" in out.stderr
        assert f"found proxy_pass http://127.0.0.1:5999 ({site.config}:" in out.stderr
        assert "Set upstream (--upstream) as written there, e.g. 127.0.0.1:5999" in out.stderr
        assert "does not include the allowlist" not in out.stderr
    assert snapshot(site.root) == before


def test_typo_in_the_maps_path_is_one_short_error_with_the_likely_fix(installed, repo, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)
    assert run(installed, "phoenix-allowlist", *allowlist_args(site, repo)).returncode == 0
    assert "location ^~" in site.gate.read_text()  # the real gate holds generated locations (the fast path)
    before = snapshot(site.root)
    typo = site.maps.with_name("ap.allowlist.conf")
    for mode in ("--test", "--reload"):
        args = allowlist_args(site, repo, mode)
        args[0] = typo
        out = run(installed, "phoenix-allowlist", *args)
        assert out.returncode == 1 and out.stdout == "", (mode, out.stdout)
        (line,) = out.stderr.splitlines()
        assert len(line.replace(str(site.root), "ROOT")) < 800, line  # the paths are long under pytest's tmp
        assert f"the maps file {typo} is not included in the http context" in line
        assert f"the http context includes {site.maps}; did you mean {site.maps}?" in line
        assert f"1 of 1 location(s) passing requests to the app do not include the gate " \
               f"{typo.with_suffix('.gate')}: location / (" in line
        assert f"If you meant {site.maps}, name that file; otherwise include {typo} in the http block" in line
        assert "^~" not in line  # generated locations are not the user's
    assert snapshot(site.root) == before and not typo.exists()


def test_two_maps_files_of_the_same_name_are_refused(installed, repo, tmp_path):
    """Readable variable names ($phoenix_app_allow) must not let two apps share them silently."""
    site = make_site(tmp_path / "nginx", app_port=5999)
    ngx = site.nginx(gated=True)
    assert run(installed, "phoenix-allowlist", *allowlist_args(site, repo)).returncode == 0
    assert "$phoenix_app_allow" in site.maps.read_text()
    other = tmp_path / "other" / "app.allowlist.conf"
    other.parent.mkdir()
    other.write_text(site.maps.read_text())
    site.maps.write_text("# Phoenix allowlist for app (to be rewritten)\n")
    ngx.conf.write_text(ngx.conf.read_text().replace(f"include {site.maps};", f"include {site.maps};\n"
                                                                              f"    include {other};"))
    out = run(installed, "phoenix-allowlist", *allowlist_args(site, repo, "--test"))
    assert out.returncode == 1
    assert f"the allowlist {other}, also included in the http context" in out.stderr
    assert "same NGINX variables ($phoenix_app_*)" in out.stderr and "give the maps files different names" in out.stderr


def test_variable_names_are_readable_and_a_long_name_passes_nginx_t(installed, repo, tmp_path):
    base = make_site(tmp_path / "nginx", app_port=5999)
    long = base.root / "conf.d" / "customer_billing_portal_backend.allowlist.conf"
    site = Site(root=base.root, port=base.port, app_port=base.app_port, maps=long, gate=long.with_suffix(".gate"))
    site.nginx(gated=True)
    out = run(installed, "phoenix-allowlist", *allowlist_args(site, repo))
    assert out.returncode == 0, out.stderr  # written only after nginx -t passed with it
    assert "if ($phoenix_customer_billing_porta_allow = 0) { return 404; }" in site.gate.read_text()
    assert "(?<phoenix_customer_billing_porta_s>" in site.maps.read_text()
