"""Generated NGINX variable names are readable and stable (issue 7, item 3): ``$phoenix_<name>_allow``."""

from __future__ import annotations

import pytest

from phoenix.allowlist.render import app_id


@pytest.mark.parametrize("maps,expected", [
    ("/etc/nginx/conf.d/myapp.allowlist.conf", "myapp"),
    ("/etc/nginx/conf.d/app.conf", "app"),
    ("conf.d/My-Shop.v2.allowlist.conf", "my_shop_v2"),
    ("/etc/nginx/allowlists/billing", "billing"),
    ("/etc/nginx/conf.d/a_very_long_application_name.allowlist.conf", "a_very_long_applicatio"),
    ("/etc/nginx/conf.d/---.conf", "app"),
])
def test_the_id_is_the_maps_file_name(maps, expected):
    assert app_id(maps) == expected
    assert app_id(maps) == app_id(maps)  # stable
    assert len(f"phoenix_{app_id(maps)}_s") <= 32  # it names a PCRE capture group too


def test_the_same_name_in_another_directory_gives_the_same_id():
    """Which is why manage.plan refuses two such maps files in one http block (test_cli.py checks it)."""
    assert app_id("/a/conf.d/app.allowlist.conf") == app_id("/b/app.allowlist.conf") == "app"
