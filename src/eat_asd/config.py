"""The workflow/CLI configuration: schema validation with defaults, and the settings each stage takes."""

from __future__ import annotations

import copy
import json
import functools
from pathlib import Path

from .errors import ConfigError

SCHEMA_PATH = Path(__file__).with_name("config.schema.yaml")


@functools.cache
def _parsed_schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA_PATH.read_text())


def _schema() -> dict:
    """The schema, the one place that holds every key's default, range and meaning (a fresh copy)."""
    return copy.deepcopy(_parsed_schema())


def default(key: str):
    """The schema's default of a top-level key."""
    return _parsed_schema()["properties"][key].get("default")


def _resolve(node: dict, schema: dict) -> dict:
    """`node` with a local $ref ("#/$defs/name") replaced by what it points to."""
    if "$ref" not in node:
        return node
    target = schema
    for part in node["$ref"].lstrip("#/").split("/"):
        target = target[part]
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _fill_defaults(value, schema: dict, root: dict | None = None):
    """Insert schema defaults for missing object keys, recursively (not into overrides, which only replace)."""
    root = root or schema
    schema = _resolve(schema, root)
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            sub = _resolve(sub, root)
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                branches = [b for b in sub.get("oneOf", []) if b.get("type") == "object"] or [sub]
                for b in branches:
                    _fill_defaults(value[key], b, root)
    return value


def _coerce(value, schema: dict, root: dict | None = None):
    """Turn strings into the scalar types the schema asks for: `snakemake --config key={a: 1}`
    hands nested values over as strings."""
    root = root or schema
    schema = _resolve(schema, root)
    if isinstance(value, dict):
        if "properties" not in schema:  # e.g. demo: null, false or an object
            schema = next((b for b in schema.get("oneOf", []) if b.get("type") == "object"), schema)
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for key, sub in list(value.items()):
            sub_schema = props.get(key, extra if isinstance(extra, dict) else None)
            if sub_schema is not None:
                value[key] = _coerce(sub, sub_schema, root)
        return value
    if isinstance(value, list):
        arrays = [b for b in schema.get("oneOf", [schema]) if isinstance(b.get("items"), dict)]
        return [_coerce(v, arrays[0]["items"], root) for v in value] if arrays else value
    if not isinstance(value, str):
        return value
    branches = schema.get("oneOf", [schema])
    for branch in branches:
        kind = branch.get("type")
        try:
            if kind == "integer":
                return int(value)
            if kind == "number":
                return float(value)
        except ValueError:
            continue
        if kind == "boolean" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if kind == "null" and value.lower() in ("null", "none", "~"):
            return None
    return value


def validate_config(config: dict, source: str = "config") -> dict:
    """A validated copy of config with defaults filled in; ConfigError names the first bad key."""
    import jsonschema

    schema = _schema()
    config = _fill_defaults(_coerce(copy.deepcopy(dict(config)), schema), schema)
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        key = ".".join(str(p) for p in err.absolute_path) or "(top level)"
        message = err.message
        if err.validator == "additionalProperties":
            message = f"unknown key(s): {message.split('(')[-1].rstrip(')')}" if "(" in message else message
        raise ConfigError(f"{source}: {key}: {message}")
    for machine in config["overrides"]:
        if isinstance(config["machine_types"], list) and machine not in config["machine_types"]:
            raise ConfigError(f"{source}: overrides.{machine}: not one of machine_types {config['machine_types']}")
    return config


def load_config(path: str | Path, overrides: dict | None = None) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path}: not found")
    config = yaml.safe_load(path.read_text()) or {}
    config.update(overrides or {})
    return validate_config(config, str(path))


# ----------------------------------------------------------------------------- per stage


def section_schema(section: str) -> dict:
    """The schema of one top-level section (e.g. "scoring"), its $ref resolved."""
    schema = _schema()
    return _resolve(schema["properties"][section], schema)


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def check_section(section: str, values: dict) -> None:
    """Check one section's values against the schema; ConfigError names `section.key`."""
    import jsonschema

    node = {**section_schema(section), "$defs": _schema().get("$defs", {})}
    errors = sorted(jsonschema.Draft202012Validator(node).iter_errors({k: _plain(v) for k, v in values.items()}),
                    key=lambda e: list(e.absolute_path))
    if errors:
        key = ".".join(str(p) for p in errors[0].absolute_path)
        raise ConfigError(f"{section}.{key}: {errors[0].message}" if key else f"{section}: {errors[0].message}")


def schema_settings(*sections: str):
    """Class decorator (put it below @dataclass) for a stage's settings. Each field is named after a key
    of the first of `sections` that has it, takes its default from the schema, and every instance is
    checked against the schema. A check that spans several fields is all a class's own __post_init__
    has left to do."""

    def decorate(cls):
        schemas = {section: section_schema(section)["properties"] for section in sections}
        where: dict[str, list[str]] = {}
        for name in cls.__annotations__:
            section = next((s for s in sections if name in schemas[s]), None)
            if section is None:
                raise TypeError(f"{cls.__name__}.{name}: not a key of {' or '.join(sections)} in {SCHEMA_PATH.name}")
            where.setdefault(section, []).append(name)
            if "default" in schemas[section][name]:
                default = schemas[section][name]["default"]
                if isinstance(default, dict):  # a dataclass field may not share one mutable default
                    from dataclasses import field

                    setattr(cls, name, field(default_factory=functools.partial(copy.deepcopy, default)))
                else:
                    setattr(cls, name, tuple(default) if isinstance(default, list) else default)
        own_check = cls.__dict__.get("__post_init__")

        def __post_init__(self):
            for section, names in where.items():
                check_section(section, {name: getattr(self, name) for name in names})
            if own_check is not None:
                own_check(self)

        cls.__post_init__ = __post_init__
        return cls

    return decorate


# What each stage takes from a validated config, as plain values: the workflow passes them to its
# jobs as JSON params (while planning, without torch), and each stage's settings class takes them
# as keyword arguments, e.g. ScoreSettings(**machine_settings(config, "fan", "scoring")).


def feature_values(config: dict) -> dict:
    return {"target_frames": config["features"]["target_frames"], "channels": config["features"]["channels"]}


def train_values(config: dict) -> dict:
    """What the training job takes: the train and lora sections, finetune.mode, and embedding.pooling
    (the classifier trains on the embedding the memory banks use)."""
    return dict(config["train"], **config["lora"], mode=config["finetune"]["mode"], pooling=config["embedding"]["pooling"])


# Settings that change how a job runs, not what it computes: they reach the jobs untracked, and are
# left out of what names a job, so that changing them reruns nothing.
EXECUTION_SETTINGS = ("batch_size",)


def result_settings(settings: dict) -> dict:
    """A stage's settings without its execution settings: what decides its result."""
    return {k: v for k, v in settings.items() if k not in EXECUTION_SETTINGS}


def machine_settings(config: dict, machine: str, stage: str) -> dict:
    """The embedding or scoring settings of one machine type: the global ones with its overrides applied."""
    merged = dict(config[stage])
    merged.update(config["overrides"].get(machine, {}).get(stage, {}))
    return merged


def as_json(settings_section: dict) -> str:
    """A canonical JSON string (what the workflow passes to jobs as a param)."""
    return json.dumps(settings_section, sort_keys=True)
