"""Recipes: the registry-built model, error messages, ``extends:``, ``--set``, schema and run records."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import Field

from xmodalzoo.config import Component, ComponentConfig
from xmodalzoo.method import MethodConfig
from xmodalzoo.plugins import Registrar, load_plugin
from xmodalzoo.recipe import (
    RecipeError,
    apply_overrides,
    deep_merge,
    load_recipe,
    parse_override,
    recipe_json_schema,
    recipe_model,
    validate_recipe,
)
from xmodalzoo.train.record import write_run_record


class ToyHeadConfig(ComponentConfig):
    k: int = Field(2, description="number of embeddings")
    scale: int | str = 1


class ToyDataConfig(ComponentConfig):
    root: str = "data"
    size: int = 4


class ToyMethodConfig(MethodConfig):
    embed_dim: int = 16
    image_encoder: Component["image_encoder"] = {"type": "toy_image"}
    text_encoder: Component["text_encoder"] = {"type": "toy_text"}
    image_head: Component["head"] = {"type": "toy_head"}
    text_head: Component["head"] = {"type": "toy_head"}
    similarity: Component["similarity"] = {"type": "toy_sim"}
    loss: Component["loss"] = {"type": "toy_loss"}


class OtherMethodConfig(ToyMethodConfig):
    temperature: float = 0.1


def _never_built(cfg: Any, **_: Any) -> Any:
    raise AssertionError("recipe tests only validate")


def register_toys(r: Registrar, skip: tuple[str, ...] = ()) -> None:
    """One or more throw-away components of every kind (dataset: exactly one)."""
    toys = [
        ("image_encoder", "toy_image", ComponentConfig), ("text_encoder", "toy_text", ComponentConfig),
        ("head", "toy_head", ToyHeadConfig), ("head", "proj_only", ComponentConfig),
        ("similarity", "toy_sim", ComponentConfig), ("loss", "toy_loss", ComponentConfig),
        ("method", "toy_method", ToyMethodConfig), ("method", "other_method", OtherMethodConfig),
        ("dataset", "toy_data", ToyDataConfig), ("sampler", "random_captions", ComponentConfig),
    ]
    for kind, name, config in toys:
        if kind not in skip:
            r.add(kind, name, _never_built, config)


@pytest.fixture
def toys(bare_registry) -> None:
    load_plugin("toys", "toys-dist", "0.0", register_toys)


GOOD = {"data": {"type": "toy_data"}, "method": {"type": "toy_method"}}


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def errors_of(data: Any, source: str = "r.yaml") -> list[str]:
    with pytest.raises(RecipeError) as err:
        validate_recipe(data, source)
    return err.value.messages


# ------------------------------------------------------------------------- the model


def test_valid_recipe_fills_defaults_and_types_sections(toys) -> None:
    r = validate_recipe({**GOOD, "method": {"type": "toy_method", "image_head": {"type": "toy_head", "k": 5}}})
    assert (r.name, r.description, r.seed, r.output_dir) == (None, "", 0, "runs")
    assert type(r.method).__name__ == "MethodToyMethod" and isinstance(r.method, ToyMethodConfig)
    assert r.method.image_head.k == 5 and type(r.method.image_head).__name__ == "HeadToyHead"
    assert r.method.text_head.k == 2  # the method config's own default, validated into the head config
    assert r.data.type == "toy_data" and r.data.size == 4
    assert r.train.sampler.type == "random_captions" and r.train.epochs == 10
    assert r.eval.protocols == ["full"]


def test_recipe_model_follows_new_registrations(toys) -> None:
    before = recipe_model()
    assert before is recipe_model()  # cached while the registry is unchanged
    load_plugin("late", "late-dist", "0.0",
                lambda r: r.add("method", "late_method", _never_built, ToyMethodConfig))
    assert recipe_model() is not before
    assert validate_recipe({**GOOD, "method": {"type": "late_method"}}).method.type == "late_method"


def test_wrong_value_type_names_the_yaml_path(toys) -> None:
    msgs = errors_of({**GOOD, "method": {"type": "toy_method", "embed_dim": "big",
                                         "image_head": {"type": "toy_head", "k": "many"}}})
    assert msgs == [
        "r.yaml: method.embed_dim: Input should be a valid integer, unable to parse string as an integer",
        "r.yaml: method.image_head.k: Input should be a valid integer, unable to parse string as an integer",
    ]


def test_list_indices_are_kept_and_union_members_merged(toys) -> None:
    msgs = errors_of({**GOOD, "train": {"param_groups": [{"pattern": "a"}, {"pattern": "b", "lr_mult": "x"}]},
                      "method": {"type": "toy_method", "text_head": {"type": "toy_head", "scale": [1]}}})
    assert msgs[0] == ("r.yaml: method.text_head.scale: Input should be a valid integer; "
                       "or Input should be a valid string")
    assert msgs[1] == ("r.yaml: train.param_groups.1.lr_mult: "
                       "Input should be a valid number, unable to parse string as a number")
    assert len(msgs) == 2


def test_unknown_keys_suggest_close_field_names(toys) -> None:
    msgs = errors_of({**GOOD, "trian": {}, "method": {"type": "toy_method", "embedd_dim": 3,
                                                     "image_head": {"type": "toy_head", "kk": 1}}})
    assert sorted(msgs) == sorted([
        "r.yaml: trian: unknown key 'trian'. Did you mean 'train'?",
        "r.yaml: method.embedd_dim: unknown key 'embedd_dim'. Did you mean 'embed_dim'?",
        "r.yaml: method.image_head.kk: unknown key 'kk'. Did you mean 'k'?",
    ])


def test_unknown_key_without_close_match_lists_valid_keys(toys) -> None:
    (msg,) = errors_of({**GOOD, "data": {"type": "toy_data", "zzz": 1}})
    assert msg == "r.yaml: data.zzz: unknown key 'zzz'. Valid keys: root, size, type."


def test_unknown_type_suggests_registered_names(toys) -> None:
    msgs = errors_of({"data": {"type": "toy_dat"}, "method": {"type": "toy_methd", "image_head": {"type": "x"}}})
    assert msgs[0] == "r.yaml: data: unknown dataset 'toy_dat'. Did you mean 'toy_data'? Available: toy_data."
    assert msgs[1] == ("r.yaml: method: unknown method 'toy_methd'. Did you mean 'toy_method' or 'other_method'? "
                       "Available: other_method, toy_method.")
    assert len(msgs) == 2  # the head is not checked against a method that does not exist


def test_nested_unknown_type_and_missing_type(toys) -> None:
    msgs = errors_of({"data": {"root": "x"}, "method": {"type": "toy_method", "image_head": {"type": "toy_haed"}}})
    assert msgs == [
        "r.yaml: data: missing 'type' (the dataset to use); one of: toy_data.",
        "r.yaml: method.image_head: unknown head 'toy_haed'. Did you mean 'toy_head'? Available: proj_only, toy_head.",
    ]


def test_kind_with_nothing_registered_rejects_its_default(bare_registry) -> None:
    load_plugin("toys", "toys-dist", "0.0", lambda r: register_toys(r, skip=("sampler",)))
    assert errors_of(GOOD) == ["r.yaml: train.sampler: unknown sampler 'random_captions'. Available: (none)."]


def test_non_mapping_data_is_rejected(toys) -> None:
    assert errors_of([1, 2], "r.yaml") == [
        "r.yaml: expected a mapping at the top level (data:, method:, ...), got a list"]
    assert errors_of({"method": {"type": "toy_method"}}) == ["r.yaml: data: Field required"]


# ------------------------------------------------------------------------- files


def test_file_errors_are_one_clear_line(toys, tmp_path: Path) -> None:
    cases = {
        "empty.yaml": ("# only a comment\n", "empty.yaml: the file is empty"),
        "list.yaml": ("- a\n- b\n", "list.yaml: expected a mapping at the top level (data:, method:, ...), got a list"),
        "scalar.yaml": ("hello\n", "scalar.yaml: expected a mapping at the top level (data:, method:, ...), got a string"),
    }
    for name, (text, expected) in cases.items():
        with pytest.raises(RecipeError) as err:
            load_recipe(write(tmp_path / name, text))
        assert len(err.value.messages) == 1 and err.value.messages[0].startswith(str(tmp_path / expected)), name
    with pytest.raises(RecipeError) as err:
        load_recipe(tmp_path / "nope.yaml")
    assert err.value.messages == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_yaml_syntax_error_gives_line_and_column(toys, tmp_path: Path) -> None:
    path = write(tmp_path / "bad.yaml", "data:\n  type: toy_data\nmethod: {type: toy_method\ntrain: {}\n")
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    (msg,) = err.value.messages
    assert msg.startswith(f"{path}:4:6: invalid YAML: ") and "expected ',' or '}'" in msg
    path = write(tmp_path / "tab.yaml", "data:\n  type: toy_data\n   bad: : x\n")
    with pytest.raises(RecipeError, match=r"tab\.yaml:3:\d+: invalid YAML: mapping values are not allowed"):
        load_recipe(path)


def test_duplicate_keys_are_an_error(toys, tmp_path: Path) -> None:
    path = write(tmp_path / "dup.yaml", "data: {type: toy_data}\nmethod: {type: toy_method}\ndata: {type: x}\n")
    with pytest.raises(RecipeError, match=r"dup\.yaml:3:1: invalid YAML: duplicate key 'data'"):
        load_recipe(path)


def test_errors_name_the_recipe_file(toys, tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", {**GOOD, "seed": "abc"})
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert err.value.messages == [f"{path}: seed: Input should be a valid integer, unable to parse string as an integer"]


# ------------------------------------------------------------------------- --set


def test_parse_override_reads_yaml_values() -> None:
    assert parse_override("train.epochs=3") == (["train", "epochs"], 3)
    assert parse_override("train.param_groups=[]") == (["train", "param_groups"], [])
    assert parse_override("train.optimizer.lr=1e-3") == (["train", "optimizer", "lr"], 1e-3)
    assert parse_override("name=a=b") == (["name"], "a=b")
    assert parse_override("method.image_head={type: toy_head, k: 3}") == (
        ["method", "image_head"], {"type": "toy_head", "k": 3})
    assert parse_override("train.freeze.0.epochs=2") == (["train", "freeze", 0, "epochs"], 2)
    assert parse_override("train.grad_clip=null") == (["train", "grad_clip"], None)


@pytest.mark.parametrize("text, expected", [
    ("train.epochs", "expected KEY.PATH=VALUE"),
    ("=3", "expected KEY.PATH=VALUE"),
    ("train..epochs=3", "expected KEY.PATH=VALUE"),
    ("train.epochs=[1,", "the value is not valid YAML"),
])
def test_bad_override_format(text: str, expected: str) -> None:
    with pytest.raises(RecipeError, match=expected) as err:
        parse_override(text)
    assert err.value.messages[0].startswith(f"--set {text!r}: ")


def test_override_into_a_scalar_or_past_a_list_is_an_error() -> None:
    with pytest.raises(RecipeError, match=r"--set 'seed\.x=1': seed is a number, not a mapping"):
        apply_overrides({"seed": 3}, ["seed.x=1"])
    with pytest.raises(RecipeError, match=r"train\.freeze has 1 items, no index 4"):
        apply_overrides({"train": {"freeze": [{}]}}, ["train.freeze.4.epochs=1"])


def test_overrides_apply_after_extends(toys, tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", {**GOOD, "train": {"epochs": 5, "param_groups": [{"pattern": "a*"}]}})
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml", "train": {"epochs": 7}})
    r = load_recipe(child, ["train.epochs=3", "method.embed_dim=64", "train.param_groups=[]",
                            "train.optimizer.lr=0.5", "method.image_head={type: toy_head, k: 9}",
                            "description=from --set"])
    assert (r.train.epochs, r.method.embed_dim, r.train.param_groups) == (3, 64, [])
    assert (r.train.optimizer.lr, r.method.image_head.k, r.description) == (0.5, 9, "from --set")
    r = load_recipe(child, ["train.param_groups.0.lr_mult=0.1"])
    assert r.train.param_groups[0].pattern == "a*" and r.train.param_groups[0].lr_mult == 0.1


def test_override_inside_a_default_component_keeps_its_type(toys, tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", GOOD)  # image_head comes from toy_method's defaults
    r = load_recipe(path, ["method.image_head.k=3", "train.sampler.type=random_captions"])
    assert (r.method.image_head.type, r.method.image_head.k) == ("toy_head", 3)
    with pytest.raises(RecipeError, match="method.image_head: missing 'type'"):
        validate_recipe(apply_overrides(GOOD, ["method.image_head.k=3"]))  # no defaults given


def test_bad_override_value_is_reported_at_its_path(toys, tmp_path: Path) -> None:
    path = write(tmp_path / "r.yaml", GOOD)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, ["train.epochs=zero", "train.epoch=3"])
    assert err.value.messages == [
        f"{path}: train.epochs: Input should be a valid integer, unable to parse string as an integer",
        f"{path}: train.epoch: unknown key 'epoch'. Did you mean 'epochs'?",
    ]


# ------------------------------------------------------------------------- extends


def test_deep_merge() -> None:
    base = {"a": {"b": 1, "c": {"d": 2}}, "l": [1, 2], "h": {"type": "x", "k": 1}}
    over = {"a": {"c": {"e": 3}}, "l": [3], "h": {"type": "y"}}
    assert deep_merge(base, over) == {"a": {"b": 1, "c": {"d": 2, "e": 3}}, "l": [3], "h": {"type": "y"}}
    assert deep_merge(base, {"h": {"k": 2}})["h"] == {"type": "x", "k": 2}  # same type: merged
    assert base["a"]["c"] == {"d": 2}  # inputs untouched


def test_extends_merges_relative_recursive_bases_in_order(toys, tmp_path: Path) -> None:
    write(tmp_path / "common.yaml", {"seed": 1, "description": "common", "train": {"epochs": 2, "batch_size": 8}})
    write(tmp_path / "bases" / "data.yaml", {"extends": "../common.yaml", "data": {"type": "toy_data", "size": 9},
                                             "seed": 2})
    write(tmp_path / "bases" / "method.yaml", {"method": {"type": "toy_method", "embed_dim": 8,
                                                          "image_head": {"type": "toy_head", "k": 4}}, "seed": 3})
    child = write(tmp_path / "exp" / "child.yaml", {
        "extends": ["../bases/data.yaml", "../bases/method.yaml"],
        "method": {"embed_dim": 32}, "train": {"epochs": 4},
    })
    r = load_recipe(child)
    assert r.seed == 3  # the later base wins over the earlier one
    assert r.description == "common"  # recursive extends, relative to the base's own folder
    assert (r.data.size, r.method.embed_dim, r.method.image_head.k) == (9, 32, 4)  # deep merge
    assert (r.train.epochs, r.train.batch_size) == (4, 8)  # the extending file wins


def test_extends_switching_a_component_type_replaces_its_section(toys, tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", {**GOOD, "method": {"type": "toy_method", "image_head": {"type": "toy_head", "k": 3}}})
    child = write(tmp_path / "child.yaml", {"extends": "base.yaml",
                                            "method": {"type": "other_method", "temperature": 0.5}})
    r = load_recipe(child)
    assert (r.method.type, r.method.temperature, r.method.image_head.k) == ("other_method", 0.5, 2)


def test_extends_cycle_is_detected(toys, tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"extends": "sub/b.yaml", **GOOD})
    write(tmp_path / "sub" / "b.yaml", {"extends": ["../a.yaml"]})
    with pytest.raises(RecipeError, match=r"extends cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"):
        load_recipe(tmp_path / "a.yaml")
    write(tmp_path / "self.yaml", {"extends": "self.yaml"})
    with pytest.raises(RecipeError, match="extends cycle"):
        load_recipe(tmp_path / "self.yaml")


def test_extends_errors(toys, tmp_path: Path) -> None:
    child = write(tmp_path / "child.yaml", {"extends": "missing.yaml", **GOOD})
    with pytest.raises(RecipeError) as err:
        load_recipe(child)
    assert err.value.messages == [f"{tmp_path / 'missing.yaml'}: no such file"]
    write(tmp_path / "bad.yaml", {"extends": {"a": 1}, **GOOD})
    with pytest.raises(RecipeError, match="extends: expected a file name or a list of file names"):
        load_recipe(tmp_path / "bad.yaml")


# ------------------------------------------------------------------------- schema


def _defs_of(schema: dict[str, Any], ref: str) -> dict[str, Any]:
    assert ref.startswith("#/$defs/"), ref
    return schema["$defs"][ref.removeprefix("#/$defs/")]


def test_json_schema_lists_registered_types(toys) -> None:
    schema = json.loads(json.dumps(recipe_json_schema()))  # plain JSON
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["type"] == "object" and schema["additionalProperties"] is False
    assert set(schema["else"]["required"]) == {"data", "method"}  # unless the recipe extends others
    assert schema["if"] == {"required": ["extends"]}
    method = schema["properties"]["method"]
    assert method["discriminator"]["propertyName"] == "type"
    assert set(method["discriminator"]["mapping"]) == {"toy_method", "other_method"}
    assert len(method["oneOf"]) == 2
    for tag, ref in method["discriminator"]["mapping"].items():
        member = _defs_of(schema, ref)
        assert member["properties"]["type"]["const"] == tag
        assert "type" in member["required"]
    data = schema["properties"]["data"]  # a one-member union is still a tagged oneOf
    assert list(data["discriminator"]["mapping"]) == ["toy_data"] and len(data["oneOf"]) == 1
    # nested component fields are unions too
    toy_method = _defs_of(schema, method["discriminator"]["mapping"]["toy_method"])
    head = toy_method["properties"]["image_head"]
    assert set(head["discriminator"]["mapping"]) == {"proj_only", "toy_head"}


def test_json_schema_refs_all_resolve(toys) -> None:
    schema = recipe_json_schema()
    refs: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            refs.extend(v for k, v in node.items() if k == "$ref")
            for v in node.values():
                collect(v)
        elif isinstance(node, list):
            for v in node:
                collect(v)

    collect(schema)
    assert refs
    for ref in refs:
        _defs_of(schema, ref)


def test_json_schema_accepts_extends_at_the_root(toys) -> None:
    schema = json.loads(json.dumps(recipe_json_schema()))
    extends = schema["properties"]["extends"]
    kinds = [option["type"] for option in extends["anyOf"]]
    assert kinds == ["string", "array"] and extends["anyOf"][1]["items"]["type"] == "string"
    jsonschema = pytest.importorskip("jsonschema")
    validator = jsonschema.Draft202012Validator(schema)
    full = {**GOOD, "extends": ["base.yaml", "more.yaml"]}
    assert not list(validator.iter_errors({**GOOD, "extends": "base.yaml"}))
    assert not list(validator.iter_errors(full))
    assert not list(validator.iter_errors({"extends": "base.yaml", "train": {"epochs": 3}}))  # data/method from the base
    assert list(validator.iter_errors({"train": {"epochs": 3}}))  # no base: data and method are required
    assert list(validator.iter_errors({**GOOD, "extends": 3}))
    assert list(validator.iter_errors({**GOOD, "extend": "base.yaml"}))  # other unknown keys stay errors


# ------------------------------------------------------------------------- run records


def test_run_record_round_trips(toys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "r.yaml", {**GOOD, "seed": 7, "train": {"param_groups": [{"pattern": "x*"}]}})
    recipe = load_recipe(path, ["method.image_head.k=3"])
    monkeypatch.chdir(tmp_path)  # not a git checkout
    run = tmp_path / "runs" / "r"
    write_run_record(run, recipe, ["zoo", "train", str(path)], "cpu")
    resolved = yaml.safe_load((run / "recipe.resolved.yaml").read_text())
    assert resolved["method"]["image_head"] == {"type": "toy_head", "k": 3, "scale": 1}
    assert resolved["train"]["optimizer"]["betas"] == [0.9, 0.999]  # every default written out
    again = load_recipe(run / "recipe.resolved.yaml")
    assert again == recipe
    env = json.loads((run / "environment.json").read_text())
    assert env["command"] == ["zoo", "train", str(path)] and env["seed"] == 7
    assert env["device"] == "cpu"
    assert {"xmodalzoo", "python", "torch", "cuda_available", "timestamp", "plugins", "dependencies"} <= set(env)
    assert any(p["name"] == "toys" and p["distribution"] == "toys-dist" for p in env["plugins"])


def test_run_record_has_the_code_commit_and_dependency_versions(toys, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """git_commit is that of the xmodalzoo code, whatever the working directory; key versions are kept."""
    import subprocess
    from importlib.metadata import version

    import xmodalzoo
    from xmodalzoo.train.record import KEY_DEPENDENCIES, code_commit

    package = Path(xmodalzoo.__file__).resolve().parent
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", "__init__.py"], cwd=package,
                             capture_output=True, text=True).returncode == 0
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=package, capture_output=True, text=True)
    # the working directory is another git checkout, with a commit of its own
    other = tmp_path / "elsewhere"
    other.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run([*git, "init", "-q"], cwd=other, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], cwd=other, check=True)
    other_head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=other, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(other)
    recipe = load_recipe(write(tmp_path / "r.yaml", GOOD))
    write_run_record(tmp_path / "run", recipe, ["zoo", "train"], "cpu")
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["git_commit"] == code_commit()
    if tracked and head.returncode == 0:
        assert env["git_commit"].removesuffix("+dirty") == head.stdout.strip()
    else:
        assert env["git_commit"] is None
    assert not str(env["git_commit"]).startswith(other_head)
    assert list(env["dependencies"]) == list(KEY_DEPENDENCIES)
    assert env["dependencies"]["pydantic"] == version("pydantic")
    assert env["dependencies"]["numpy"] == version("numpy")
