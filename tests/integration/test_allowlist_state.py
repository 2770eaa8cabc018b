"""``nginx_whitelist.managed`` through ``salt-call --local``: test mode, apply, idempotence, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from devtools.flaskapp import FlaskApp
from devtools.saltcall import salt_call, write_minion_config
from devtools.site import make_site, request

pytestmark = pytest.mark.nginx


@pytest.fixture(scope="module")
def env(repo, tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    site = make_site(root / "nginx", app_port=5999)
    ngx = site.nginx(gated=True)
    conf = write_minion_config(root, repo)
    return {"site": site, "nginx": ngx, "conf": conf, "apps": str(repo / "tests" / "apps")}


def managed(env, *extra: str, test: bool = False, app: str = "demo_app:app", config: str | None = None):
    site = env["site"]
    args = ["state.single", "nginx_whitelist.managed", f"name={site.maps}", f"app={app}", f"cwd={env['apps']}",
            f"config={config or site.config}", "upstream=127.0.0.1:5999", *extra]
    if test:
        args.append("test=True")
    code, data, err = salt_call(env["conf"], *args)
    assert isinstance(data, dict), (code, data, err)
    (ret,) = data.values()
    return ret


def snapshot(site) -> dict[str, bytes | None]:
    out = {}
    for path in sorted(Path(site.maps).parent.iterdir()):
        out[path.name] = path.read_bytes()
    return out


def test_test_mode_shows_the_diff_and_changes_nothing(env):
    site = env["site"]
    before = snapshot(site)
    ret = managed(env, test=True)
    assert ret["result"] is None, ret["comment"]
    assert "would be updated" in ret["comment"]
    assert f"+++ {site.maps}" in ret["changes"]["diff"] and "/dev/null" in ret["changes"]["diff"]
    assert snapshot(site) == before and not site.maps.exists()


def test_apply_then_idempotent(env):
    site = env["site"]
    ret = managed(env)
    assert ret["result"] is True, ret["comment"]
    assert "passed nginx -t" in ret["comment"]
    assert "fast path: " in ret["comment"] and "location ^~" in site.gate.read_text()
    assert site.maps.exists() and site.gate.exists()
    assert env["nginx"].test().returncode == 0
    again = managed(env)
    assert again["result"] is True and again["changes"] == {}, again
    assert "up to date" in again["comment"]
    quiet = managed(env, test=True)
    assert quiet["result"] is True and quiet["changes"] == {}


def test_a_change_keeps_the_previous_version(env):
    site = env["site"]
    managed(env)
    old = site.maps.read_text()
    ret = managed(env, "console_path=/debug-console")
    assert ret["result"] is True, ret["comment"]
    assert Path(str(site.maps) + ".previous").read_text() == old
    assert "/debug-console" in site.maps.read_text()
    assert managed(env)["result"] is True  # back to the default


def test_fast_path_can_be_turned_off(env):
    site = env["site"]
    managed(env)
    ret = managed(env, "fast_path=False")
    assert ret["result"] is True, ret["comment"]
    assert "no fast path: turned off (fast_path=False)" in ret["comment"]
    assert "location" not in "".join(line for line in site.gate.read_text().splitlines() if not line.startswith("#"))
    assert "-location ^~" in ret["changes"]["diff"]
    assert managed(env)["result"] is True  # back to the default
    assert "location ^~" in site.gate.read_text()


def test_strict_paths_off_and_intercept_errors_on(env):
    site = env["site"]
    managed(env)
    assert "$request_uri" in site.maps.read_text() and "intercept" not in site.gate.read_text()
    ret = managed(env, "strict_paths=False", "intercept_errors=True")
    assert ret["result"] is True, ret["comment"]
    assert "strict paths off" in ret["comment"] and "NGINX answers the app's 500s" in ret["comment"]
    gate = site.gate.read_text()
    assert "proxy_intercept_errors on;" in gate and "error_page 500 $uri;" in gate and "if ($args)" in gate
    assert "$request_uri" not in site.maps.read_text() and "$request_uri" not in gate
    assert env["nginx"].test().returncode == 0
    assert managed(env)["result"] is True  # back to the defaults
    assert "$request_uri" in site.maps.read_text() and "intercept" not in site.gate.read_text()


BAD = [
    ({"app": "no_such_module:app"}, "no_such_module"),
    ({"app": "broken_app:app"}, "boom: DATABASE_URL is not set"),
    ({"app": "empty_app:app"}, "no routable rules"),
    ({"app": "demo_app:nothing"}, "no attribute 'nothing'"),
    ({"app": "demo_app:app", "config": "/nonexistent/nginx.conf"}, "/nonexistent/nginx.conf' does not exist"),
    ({"app": "demo_app:app", "extra": ["upstream=127.0.0.1:1"]},
     "upstream '127.0.0.1:1' is not passed to by any location"),
    ({"app": "demo_app:app", "extra": ["status=1000"]}, "nginx -t rejected the configuration"),
]


@pytest.mark.parametrize("case,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_names_the_input_and_changes_nothing(env, case, message):
    site = env["site"]
    managed(env)
    before = snapshot(site)
    extra = list(case.get("extra", []))
    ret = managed(env, *extra, app=case["app"], config=case.get("config"))
    assert ret["result"] is False, ret
    assert message in ret["comment"], ret["comment"]
    assert snapshot(site) == before  # byte for byte, and no stray temporary files


def test_unparseable_config_is_reported_with_file_and_line(env, tmp_path):
    broken = tmp_path / "nginx.conf"
    broken.write_text("events {}\nhttp {\n    server {\n        listen 127.0.0.1:1\n    }\n")
    before = snapshot(env["site"])
    ret = managed(env, config=str(broken))
    assert ret["result"] is False
    assert str(broken) in ret["comment"]
    assert snapshot(env["site"]) == before


def test_an_include_that_nothing_references_fails_loudly(env, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    ngx = site.nginx(gated=False)  # the location proxies to the app without the gate
    ret = managed(dict(env, site=site), config=str(ngx.conf))
    assert ret["result"] is False
    assert "do not include the gate" in ret["comment"] and "location /" in ret["comment"]
    assert not site.gate.exists() and not site.maps.exists()


def test_maps_that_the_http_block_does_not_include_fail_loudly(env, tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    ngx = site.nginx(gated=True)
    ngx.conf.write_text(ngx.conf.read_text().replace(f"include {site.maps};", ""))
    ret = managed(dict(env, site=site), config=str(ngx.conf))
    assert ret["result"] is False
    assert f"the maps file {site.maps} is not included in the http context" in ret["comment"]
    assert not site.gate.exists() and not site.maps.exists()


def test_metacharacter_routes_pass_nginx_t_and_reach_the_app(repo, tmp_path):
    import urllib.parse

    from phoenix.allowlist import manage

    with FlaskApp("meta_app:app", repo / "tests" / "apps") as app:
        site = make_site(tmp_path / "nginx", app.port)
        ngx = site.nginx(gated=True)
        ret = manage.managed(str(site.maps), app="meta_app:app", cwd=str(repo / "tests" / "apps"),
                             config=str(site.config))
        assert ret["result"] is True, ret["comment"]
        with ngx.start(site.port):
            for path in ["/a b", '/q"uote', "/s'q", "/semi;colon", "/br{ace}", "/do$llar", "/ha#sh",
                         "/back\\slash", "/caf\u00e9", "/\u4e2d\u6587/7", "/x y/z"]:
                status, reached, body = request(site.port, "GET", urllib.parse.quote(path))
                assert reached and status == 200, (path, status, body)
            for path in ["/semi", "/a", "/br", "/do", "/caf", "/\u4e2d\u6587/x", "/ha"]:
                status, reached, _ = request(site.port, "GET", urllib.parse.quote(path))
                assert not reached and status == 404, path


def test_no_secret_or_temp_file_left_behind(env):
    leftovers = [p for p in Path(env["site"].maps).parent.iterdir() if "phoenix-new" in p.name]
    assert leftovers == []


def test_two_locations_with_their_own_copies_of_the_gate_get_a_fast_path_each(env, repo, tmp_path):
    """Through salt-call: the state finds the copy a location includes, writes it (test mode first shows it),
    and the real NGINX serves each location's routes through its own fast path, refusing the rest."""
    from devtools.nginx import Nginx, free_port

    with FlaskApp("demo_app:app", repo / "tests" / "apps") as app:
        root = tmp_path / "nginx"
        (root / "conf.d").mkdir(parents=True)
        maps, gate = root / "conf.d" / "app.allowlist.conf", root / "conf.d" / "app.allowlist.gate"
        copy = root / "conf.d" / "app.allowlist.item.gate"
        port, upstream = free_port(), f"proxy_pass http://127.0.0.1:{app.port};"
        ngx = Nginx(root, f"include {maps};\n server {{ listen 127.0.0.1:{port};\n"
                          f"  location / {{ include {gate}; {upstream} }}\n"
                          f"  location /item/ {{ include {copy}; proxy_read_timeout 5s; {upstream} }} }}")
        args = [f"name={maps}", "app=demo_app:app", f"cwd={env['apps']}", f"config={ngx.conf}"]
        code, data, err = salt_call(env["conf"], "state.single", "nginx_whitelist.managed", *args, "test=True")
        (ret,) = data.values()
        assert ret["result"] is None and f"+++ {copy}" in ret["changes"]["diff"], ret
        assert not copy.exists() and not gate.exists()
        code, data, err = salt_call(env["conf"], "state.single", "nginx_whitelist.managed", *args)
        (ret,) = data.values()
        assert ret["result"] is True, ret["comment"]
        assert "app.allowlist.item.gate: fast path: 1 rule in 1 regex location inside location /item/" in ret["comment"], ret["comment"]
        assert str(copy) in ret["changes"]["files"]
        assert 'location ^~ "/item" {' not in gate.read_text()  # the server gives /item/... to the other location
        assert "location ~ \"^/item/" in copy.read_text()
        code, data, err = salt_call(env["conf"], "state.single", "nginx_whitelist.managed", *args)
        (again,) = data.values()
        assert again["result"] is True and again["changes"] == {}, again
        with ngx.start(port):
            assert request(port, "GET", "/item/7")[:2] == (200, True)
            assert request(port, "GET", "/login")[:2] == (200, True)
            assert request(port, "GET", "/item/x")[:2] == (404, False)
            assert request(port, "GET", "/console")[:2] == (404, False)
            assert request(port, "POST", "/item/7")[:2] == (404, False)
