"""The loader modules through Salt's own loader (no daemons): modules, states, test mode."""

from __future__ import annotations

import pytest
import salt.config
from saltfactories.utils.functional import Loaders

from devtools.site import make_site


@pytest.fixture
def loaders(repo, tmp_path):
    opts = salt.config.minion_config(None)
    opts.update(
        file_client="local", cachedir=str(tmp_path / "cache"), pki_dir=str(tmp_path / "pki"),
        module_dirs=[str(repo / "_modules")], states_dirs=[str(repo / "_states")], utils_dirs=[str(repo / "_utils")],
    )
    loaders = Loaders(opts)
    yield loaders
    loaders.reset_state()


@pytest.fixture
def site(tmp_path):
    site = make_site(tmp_path / "nginx", app_port=5999)
    site.nginx(gated=True)
    return site


def test_module_functions_are_loaded_with_docs(loaders):
    funcs = {f for f in loaders.modules if f.startswith("nginx_whitelist.")}
    assert funcs >= {"nginx_whitelist.routes", "nginx_whitelist.render", "nginx_whitelist.manage",
                     "nginx_whitelist.probe"}
    for func in funcs:
        assert "CLI Example:" in loaders.modules[func].__doc__, func


def test_routes_and_render(loaders, repo):
    apps = str(repo / "tests" / "apps")
    table = loaders.modules.nginx_whitelist.routes("demo_app:app", cwd=apps)
    assert {r["rule"] for r in table["rules"]} >= {"/login", "/item/<int:item_id>", "/<username>"}
    out = loaders.modules.nginx_whitelist.render("/etc/nginx/conf.d/x.conf", "demo_app:create_app()", cwd=apps)
    assert "map " in out["maps"] and out["variable"] == "$phoenix_x_allow"
    # without a configuration to read there is no fast path: the gate tests the request line, and asks the maps
    # (whose variable is the whole decision, for a gate written by hand) for anything else
    assert 'if ($request !~ "^' in out["gate"] and "if ($phoenix_x_fast) { return 404; }" in out["gate"]
    assert 'map "$phoenix_x_allow" $phoenix_x_deny {' in out["maps"]


def test_routes_error_is_a_command_execution_error(loaders, repo):
    from salt.exceptions import CommandExecutionError

    with pytest.raises(CommandExecutionError, match="no_such_module"):
        loaders.modules.nginx_whitelist.routes("no_such_module:app", cwd=str(repo / "tests" / "apps"))


def test_state_test_mode_then_apply(loaders, repo, site):
    kwargs = dict(name=str(site.maps), app="demo_app:app", cwd=str(repo / "tests" / "apps"),
                  config=str(site.config), upstream="127.0.0.1:5999")
    ret = loaders.states.nginx_whitelist.managed(test=True, **kwargs)
    assert ret.result is None and "diff" in ret.changes and not site.maps.exists()
    ret = loaders.states.nginx_whitelist.managed(**kwargs)
    assert ret.result is True and site.maps.exists(), ret.comment
    ret = loaders.states.nginx_whitelist.managed(**kwargs)
    assert ret.result is True and ret.changes == {}
