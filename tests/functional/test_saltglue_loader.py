"""``phoenix.saltglue`` against Salt's real loader dunders (issue 7, item 2).

In Salt 3008 ``__pillar__`` (and, depending on the loader, ``__opts__``) is a
``salt.loader.context.NamedLoaderContext``, not a ``dict``: ``_section()`` used to test ``isinstance(node,
dict)`` and silently ignored every pillar setting. Here a module is loaded by a real ``LazyLoader`` and reads
its settings through saltglue with the dunders the loader injected.
"""

from __future__ import annotations

import textwrap

import pytest
import salt.config
import salt.loader.context
import salt.loader.lazy

MODULE = textwrap.dedent('''
    import phoenix.saltglue

    def dunders():
        return type(__opts__), type(__pillar__), isinstance(__pillar__, dict)

    def settings(path, **overrides):
        return phoenix.saltglue.settings(__opts__, __pillar__, path, overrides)

    def section(path):
        return phoenix.saltglue.section(__pillar__, path)

    def value(path, default=None):
        return phoenix.saltglue.value(__opts__, __pillar__, path, default)
''')


@pytest.fixture(scope="module")
def loader(tmp_path_factory):
    mods = tmp_path_factory.mktemp("glue-mods")
    (mods / "glue_probe.py").write_text(MODULE)
    opts = salt.config.minion_config(None)
    opts["phoenix"] = {"aws": {"region": "config-region", "profile": "ops", "max_attempts": 3},
                       "rebuild": {"stack": "config-stack", "max_age": "24h"}}
    pillar = {"phoenix": {"aws": {"region": "eu-west-1", "endpoint_url": "http://127.0.0.1:5000"},
                          "rebuild": {"stack": "web"}, "broken": "eu-west-1"}}
    return salt.loader.lazy.LazyLoader([str(mods)], opts, tag="module", pack={"__pillar__": pillar, "__salt__": {}})


def test_the_pillar_dunder_is_a_loader_context_not_a_dict(loader):
    _, pillar_type, is_dict = loader["glue_probe.dunders"]()
    assert pillar_type is salt.loader.context.NamedLoaderContext and is_dict is False


def test_settings_merge_config_pillar_and_arguments(loader):
    assert loader["glue_probe.settings"]("phoenix:aws") == {
        "region": "eu-west-1", "profile": "ops", "max_attempts": 3, "endpoint_url": "http://127.0.0.1:5000"}
    assert loader["glue_probe.settings"]("phoenix:aws", region="us-east-2", profile=None)["region"] == "us-east-2"
    assert loader["glue_probe.value"]("phoenix:rebuild:stack") == "web"
    assert loader["glue_probe.value"]("phoenix:rebuild:max_age") == "24h"  # from config, pillar has none
    assert loader["glue_probe.value"]("phoenix:rebuild:group", "none") == "none"


def test_section_is_a_plain_dict_and_absent_is_empty(loader):
    section = loader["glue_probe.section"]("phoenix:aws")
    assert type(section) is dict and section["region"] == "eu-west-1"
    assert loader["glue_probe.section"]("phoenix:nothing") == {}
    assert loader["glue_probe.section"]("other:deep:path") == {}


def test_a_value_where_a_mapping_belongs_names_the_path(loader):
    with pytest.raises(ValueError, match=r"phoenix:broken must be a mapping .*'eu-west-1'.*fix it in pillar"):
        loader["glue_probe.section"]("phoenix:broken")


def test_named_loader_contexts_for_both_dunders(loader):
    """The same objects Salt injects, built directly: saltglue reads them inside the loader's context."""
    import phoenix.saltglue

    context = salt.loader.context.LoaderContext()
    opts, pillar = context.named_context("__opts__"), context.named_context("__pillar__")
    assert not isinstance(opts, dict) and not isinstance(pillar, dict)
    with salt.loader.context.loader_context(loader):
        assert phoenix.saltglue.settings(opts, pillar, "phoenix:aws")["profile"] == "ops"
        assert phoenix.saltglue.settings(opts, pillar, "phoenix:aws")["region"] == "eu-west-1"
        assert phoenix.saltglue.value(opts, pillar, "phoenix:rebuild:stack") == "web"
