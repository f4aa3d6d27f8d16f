"""Registry behaviour: lookups with suggestions, listing with globs, all-or-nothing plugins, strict mode."""
from __future__ import annotations

import pytest

from xmodalzoo import api
from xmodalzoo.config import ComponentConfig
from xmodalzoo.plugins import PluginLoadError, Registrar, load_plugin, plugin_status
from xmodalzoo.registry import REGISTRY, RegistryError


class _Opts(ComponentConfig):
    k: int = 1


def _factory(cfg, **_):  # type: ignore[no-untyped-def]
    """A throw-away component."""
    return cfg


def _plugin(*components: tuple[str, str]):  # type: ignore[no-untyped-def]
    def register(r: Registrar) -> None:
        for kind, name in components:
            r.add(kind, name, _factory, _Opts)

    return register


@pytest.fixture
def lenient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "0")


def test_unknown_name_lists_available_and_closest(bare_registry) -> None:
    load_plugin("a", "dist-a", "1.0", _plugin(("head", "gauss_head"), ("head", "pointwise"), ("head", "setwise")))
    with pytest.raises(RegistryError) as err:
        REGISTRY.get("head", "gaus_head")
    msg = str(err.value)
    assert "unknown head 'gaus_head'" in msg
    assert "Did you mean 'gauss_head'?" in msg
    assert "Available: gauss_head, pointwise, setwise." in msg
    assert "failed to load" not in msg


def test_unknown_name_mentions_failed_plugins(bare_registry, lenient) -> None:
    def broken(r: Registrar) -> None:
        raise ImportError("No module named 'faiss'")

    with pytest.warns(UserWarning, match="broken_plugin"):
        load_plugin("broken_plugin", "dist-broken", "0.1", broken)
    with pytest.raises(RegistryError, match=r"failed to load.*broken_plugin \(ImportError: No module named 'faiss'\)"):
        REGISTRY.get("method", "pcme")


def test_unknown_kind_is_an_error(bare_registry) -> None:
    with pytest.raises(RegistryError, match="unknown component kind 'heads'; kinds are: image_encoder"):
        api.list_components("heads")


def test_list_components_filters_by_glob(bare_registry) -> None:
    load_plugin("a", "dist-a", "1.0", _plugin(("loss", "triplet_x"), ("loss", "infonce"), ("loss", "soft_triplet")))
    assert api.list_components("loss") == ["infonce", "soft_triplet", "triplet_x"]
    assert api.list_components("loss", filter="*triplet*") == ["soft_triplet", "triplet_x"]
    assert api.list_components("loss", filter="triplet*") == ["triplet_x"]
    assert api.list_components("loss", filter="nothing*") == []
    assert api.list_components("head") == []


def test_duplicate_name_across_plugins_is_all_or_nothing(bare_registry, lenient) -> None:
    first = load_plugin("first", "dist-first", "1.0", _plugin(("head", "shared"), ("loss", "first_loss")))
    assert first.ok and first.components == 2
    with pytest.warns(UserWarning, match="second"):
        second = load_plugin("second", "dist-second", "2.0", _plugin(("loss", "second_loss"), ("head", "shared")))
    assert not second.ok
    # the error names both owners and their distributions
    assert "head 'shared' is registered twice" in second.error
    assert "dist-first" in second.error and "dist-second" in second.error
    # none of the second plugin's components is registered, the first one's all are
    assert api.list_components("loss") == ["first_loss"]
    assert REGISTRY.get("head", "shared").plugin == "first"
    statuses = {s.name: s for s in plugin_status()}
    assert statuses["second"].ok is False and statuses["second"].distribution == "dist-second"
    assert REGISTRY.failed_plugins["second"] == second.error


def test_strict_mode_makes_a_failing_plugin_fatal(bare_registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODALZOO_STRICT_PLUGINS", "1")
    load_plugin("first", "dist-first", "1.0", _plugin(("head", "shared")))
    with pytest.raises(PluginLoadError, match="plugin 'second' .*dist-second.* failed to load"):
        load_plugin("second", "dist-second", "2.0", _plugin(("head", "shared")))
    assert [e.plugin for e in REGISTRY.list("head")] == ["first"]


def test_registrar_rejects_bad_registrations() -> None:
    r = Registrar("p", "dist-p")
    with pytest.raises(RegistryError, match="unknown component kind 'heads'"):
        r.add("heads", "x", _factory)
    with pytest.raises(RegistryError, match="invalid component name"):
        r.add("head", "bad name!", _factory)
    r.add("head", "x", _factory)
    with pytest.raises(RegistryError, match="registers head 'x' twice"):
        r.add("head", "x", _factory)


def test_entry_doc_defaults_to_first_docstring_line(bare_registry) -> None:
    load_plugin("a", "dist-a", "1.0", _plugin(("head", "h")))
    entry = api.info("h")[0]
    assert (entry.kind, entry.plugin, entry.distribution, entry.doc) == ("head", "a", "dist-a", "A throw-away component.")


def test_info_on_unknown_name_suggests_across_kinds(bare_registry) -> None:
    load_plugin("a", "dist-a", "1.0", _plugin(("head", "gpo_head"), ("loss", "triplet_x")))
    with pytest.raises(RegistryError, match=r"unknown component 'triplet'\. Did you mean 'triplet_x'\?") as err:
        api.info("triplet")
    assert "Available: gpo_head, triplet_x." in str(err.value)


def test_pretrained_entries_record_their_distribution_and_clash_by_name(bare_registry, lenient) -> None:
    def weights(*names: str):  # type: ignore[no-untyped-def]
        def register(r: Registrar) -> None:
            for n in names:
                r.add_pretrained(n, repo_id=f"me/{n}", method="m")

        return register

    first = load_plugin("first", "dist-first", "1.0", weights("shared", "one"))
    assert (first.ok, first.components, first.pretrained) == (True, 0, 2)
    assert REGISTRY.pretrained["shared"].distribution == "dist-first"
    with pytest.warns(UserWarning, match="second"):
        second = load_plugin("second", "dist-second", "2.0", weights("two", "shared"))
    assert not second.ok
    assert ("pretrained 'shared' is registered twice: by plugin 'first' (distribution dist-first) "
            "and by plugin 'second' (distribution dist-second)") in second.error
    assert sorted(REGISTRY.pretrained) == ["one", "shared"]  # nothing of the second plugin


def test_entry_validate_fills_type_and_rejects_unknown_keys(bare_registry) -> None:
    load_plugin("a", "dist-a", "1.0", _plugin(("head", "h")))
    entry = REGISTRY.get("head", "h")
    cfg = entry.validate({"k": 3})
    assert (cfg.type, cfg.k) == ("h", 3)
    with pytest.raises(Exception, match="Extra inputs are not permitted"):
        entry.validate({"kk": 3})
