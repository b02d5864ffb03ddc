"""Loading the settings: the config file found, pydantic-settings' sources merged in their
priority and validated once, every mistake one line naming the key and where its value came
from (:func:`load_settings`), and where each effective value came from (:func:`effective_settings`)."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

from pydantic import (
    BaseModel,
    SecretStr,
    ValidationError,
)
from pydantic_settings import (
    DotEnvSettingsSource,
    EnvSettingsSource,
    SettingsError,
    TomlConfigSettingsSource,
)

from crusader_mail.errors import ConfigError
from crusader_mail.settings.model import Settings
from crusader_mail.settings.sections import CONFIG_ENV, DEFAULT_CONFIG, ENV_PREFIX, SENDGRID_API_KEY


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    config_file: Path | None
    sources: Mapping[str, str]  # dotted key -> where its value came from
    warnings: tuple[str, ...] = ()  # unknown CRUSADER_MAIL_* names, ignored (one line each)


def find_config(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"{explicit}: config file not found")
        return explicit
    named = environ.get(CONFIG_ENV)
    if named:
        path = Path(named)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found (from ${CONFIG_ENV})")
        return path
    default = Path(DEFAULT_CONFIG)
    return default if default.is_file() else None


@dataclass(frozen=True)
class _Layer:
    """What one source gave: ``name`` says where (``environment``, a ``.env`` or TOML path),
    ``values`` the nested values, ``variables`` the names it read (lowercased) for the
    environment and ``.env``."""

    name: str
    values: dict[str, Any]
    variables: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def is_environment(self) -> bool:
        return self.name == ENVIRONMENT


ENVIRONMENT = "environment"


def load_settings(config: Path | None = None) -> LoadedSettings:
    """Load and validate the settings; a bad value raises :class:`ConfigError` naming it.

    pydantic-settings' own sources read the environment (``EnvSettingsSource``), the ``.env``
    beside the config file (``DotEnvSettingsSource``) and the config file
    (``TomlConfigSettingsSource``); the values are merged in that priority and validated once.
    """
    config_file = find_config(config)
    base = config_file.resolve().parent if config_file else Path.cwd()
    layers = [_variables(EnvSettingsSource(Settings), ENVIRONMENT)]
    dotenv = base / ".env"
    if dotenv.is_file():
        layers.append(_variables(DotEnvSettingsSource(Settings, env_file=dotenv), str(dotenv)))
    if config_file is not None:
        layers.append(_toml(config_file))
    warnings = tuple(warning for layer in layers for warning in _unknown_names(layer))
    sources = _provenance(layers)
    merged: dict[str, Any] = {}
    for layer in reversed(layers):  # lowest priority first: higher layers overwrite
        merged = _merge(merged, layer.values)
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe(error, sources)) from None
    settings = _anchor_paths(settings, base)
    return LoadedSettings(settings, config_file, sources, warnings)


def _variables(source: EnvSettingsSource, name: str) -> _Layer:
    """The values of the environment or a ``.env`` file; names that are no setting dropped
    (a ``.env`` holds other tools' variables too; :func:`_unknown_names` warns about ours)."""
    try:
        values = source()
    except SettingsError as error:
        raise ConfigError(_not_json(error, source.env_vars, name)) from None
    return _Layer(name, _known_only(values, Settings), dict(source.env_vars))


def _toml(config_file: Path) -> _Layer:
    try:
        source = TomlConfigSettingsSource(Settings, toml_file=config_file)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{config_file}: not valid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{config_file}: cannot read: {error.strerror}") from None
    _refuse_secrets(source.toml_data, config_file)
    return _Layer(str(config_file), source())


def _merge(low: dict[str, Any], high: Mapping[str, Any]) -> dict[str, Any]:
    """``high`` over ``low``, section by section."""
    merged = dict(low)
    for key, value in high.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _sections(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """The fields of ``model`` that are sections (a model of their own), by name."""
    found = {}
    for name, info in model.model_fields.items():
        kind = info.annotation
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found[name] = kind
    return found


def _names(model: type[BaseModel]) -> list[str]:
    """The settings of ``model`` an editor can set by name (not the hidden alias fields)."""
    return [name for name, info in model.model_fields.items() if not info.exclude]


def _known_only(values: Mapping[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    fields = model.model_fields
    aliases = {SENDGRID_API_KEY, SENDGRID_API_KEY.lower()} if model is Settings else set()
    sections = _sections(model)
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if key in sections and isinstance(value, Mapping):
            kept[key] = _known_only(value, sections[key])
        elif key in fields or key in aliases:
            kept[key] = value
    return kept


def known_env_names() -> set[str]:
    """Every ``CRUSADER_MAIL_*`` name a setting is read from (sections too: their value may be
    a JSON object), and ``CRUSADER_MAIL_CONFIG``."""

    def walk(model: type[BaseModel], prefix: str) -> set[str]:
        names = set()
        sections = _sections(model)
        for name in _names(model):
            names.add(env_name(prefix + name))
            if name in sections:
                names |= walk(sections[name], f"{prefix}{name}.")
        return names

    return walk(Settings, "") | {CONFIG_ENV}


def _unknown_names(layer: _Layer) -> list[str]:
    """One warning per ``CRUSADER_MAIL_*`` name of the environment or ``.env`` that is no
    setting, with the nearest one (``CRUSADER_MAIL_IMAP_PASSWORD``: ``…IMAP__PASSWORD``)."""
    known = sorted(known_env_names())
    place = "the environment" if layer.is_environment else layer.name
    warnings = []
    for variable, value in sorted(layer.variables.items()):
        name = variable.upper()
        if not name.startswith(ENV_PREFIX) or not value or name in known:
            continue
        nearest = _nearest(name, known, ENV_PREFIX)
        hint = f"; did you mean {nearest}?" if nearest else _NAMES_HINT
        warnings.append(f"unknown setting {name} in {place}, ignored{hint}")
    return warnings


def _nearest(name: str, known: list[str], prefix: str = "") -> str | None:
    """The known name nearest ``name`` (compared without their shared ``prefix``), if any is
    near enough to be the one meant."""
    tail = name.removeprefix(prefix)
    tails = {entry.removeprefix(prefix): entry for entry in known}
    found = difflib.get_close_matches(tail, list(tails), n=1, cutoff=0.75)
    if found:
        return tails[found[0]]
    inside = [entry for entry in known if entry.endswith("__" + tail)]  # its section left out
    return inside[0] if len(inside) == 1 else None


_NAMES_HINT = (
    f" (settings are {ENV_PREFIX}<KEY>, sections joined with __; `config check` lists the keys)"
)


def _wants_json(dotted: str) -> bool:
    """Is the setting ``dotted`` a list or a section, written as JSON in a variable?"""
    model: type[BaseModel] = Settings
    *path, name = dotted.split(".")
    for part in path:
        section = _sections(model).get(part)
        if section is None:
            return False
        model = section
    info = model.model_fields.get(name)
    if info is None:
        return False
    kinds = get_args(info.annotation) or (info.annotation,)
    origin = getattr(info.annotation, "__origin__", None)
    return origin in (list, tuple, dict) or any(
        isinstance(kind, type) and issubclass(kind, BaseModel) for kind in kinds
    )


_JSON_EXAMPLES = {
    "feeds": '["https://blog.example.com/feed"]',
    "fetch.allow_hosts": '["intranet.example", "10.1.2.0/24"]',
}


def _not_json(error: SettingsError, variables: Mapping[str, str | None], where: str) -> str:
    """The one line for a list or section variable whose value is not JSON, naming it."""
    found = re.search(r'field "([^"]+)"', str(error))
    prefix = env_name(found.group(1)).lower() if found else ENV_PREFIX.lower()
    place = "in the environment" if where == ENVIRONMENT else f"in {where}"
    for variable, value in sorted(variables.items()):
        if not value or not (variable == prefix or variable.startswith(prefix + "__")):
            continue
        dotted = variable[len(ENV_PREFIX) :].replace("__", ".")
        if not _wants_json(dotted):
            continue
        try:
            json.loads(value)
        except ValueError as bad:
            reason = getattr(bad, "msg", str(bad))
            example = _JSON_EXAMPLES.get(
                dotted,
                '{"key": "value"}'
                if "." not in dotted and dotted in _sections(Settings)
                else '["…"]',
            )
            return (
                f"{variable.upper()} {place} is not valid JSON ({reason}); lists and sections "
                f"are written as JSON there, e.g. {variable.upper()}='{example}'"
            )
    return f"{place.removeprefix('in ')}: {error}"


def secret_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[str]:
    """The dotted name of every secret setting (a ``SecretStr``): only the environment (or the
    ``.env`` file beside the config file) may set them, never the config file."""
    keys: list[str] = []
    for name, info in model.model_fields.items():
        if info.exclude:
            continue  # the alias of one (sendgrid_api_key)
        kinds = get_args(info.annotation) or (info.annotation,)
        if SecretStr in kinds:
            keys.append(prefix + name)
        for kind in kinds:
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                keys += secret_keys(kind, f"{prefix}{name}.")
    return keys


def env_name(key: str) -> str:
    """The environment variable of a dotted setting: ``CRUSADER_MAIL_IMAP__PASSWORD``."""
    return ENV_PREFIX + key.upper().replace(".", "__")


def _refuse_secrets(toml_data: Mapping[str, Any], config_file: Path) -> None:
    """A secret in the config file is refused (ConfigError naming it and its variable), never
    used: the file is committed."""
    present = {
        "sendgrid.api_key" if key == SENDGRID_API_KEY.lower() else key
        for key in _flatten(toml_data)
    }
    found = [
        key for key in secret_keys() if any(k == key or k.startswith(key + ".") for k in present)
    ]
    if not found:
        return
    where = [SENDGRID_API_KEY if key == "sendgrid.api_key" else env_name(key) for key in found]
    one = len(found) == 1
    raise ConfigError(
        f"{config_file}: {' and '.join(found)} {'is a secret' if one else 'are secrets'}, never "
        f"read from a config file (it gets committed): remove {'it' if one else 'them'} and set "
        f"{' and '.join(where)} in the environment (a GitHub secret, or .env beside the file)"
    )


def _anchor_paths(settings: Settings, base: Path) -> Settings:
    def anchor(path: Path) -> Path:
        return path if path.is_absolute() else base / path

    feeds = [
        feed if "://" in feed or Path(feed).is_absolute() else str(base / feed)
        for feed in settings.feeds
    ]
    return settings.model_copy(
        update={
            "feeds": feeds,
            "state_dir": anchor(settings.state_dir),
            "subscribers_dir": anchor(settings.subscribers_dir),
            "templates_dir": anchor(settings.templates_dir),
            "outbox_dir": anchor(settings.outbox_dir),
            "preview_dir": anchor(settings.preview_dir),
            "archive_dir": anchor(settings.archive_dir),
            "note_file": anchor(settings.note_file),
        }
    )


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}{str(key).lower()}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _provenance(layers: list[_Layer]) -> dict[str, str]:
    """Which source each dotted key comes from (highest priority wins); ``sendgrid.api_key``
    from ``SENDGRID_API_KEY`` only when no ``CRUSADER_MAIL_SENDGRID__API_KEY`` set it."""
    sources: dict[str, str] = {}
    conventional: str | None = None
    for layer in reversed(layers):  # lowest first, so higher layers overwrite
        for key in _flatten(layer.values):
            if key == SENDGRID_API_KEY.lower():
                here = "" if layer.is_environment else f" in {layer.name}"
                conventional = SENDGRID_API_KEY + here
            elif layer.is_environment:
                sources[key] = "env " + env_name(key)
            else:
                sources[key] = layer.name
    if conventional is not None and "sendgrid.api_key" not in sources:
        sources["sendgrid.api_key"] = conventional
    return sources


def source_of(key: str, sources: Mapping[str, str]) -> str:
    return sources.get(key) or next(
        (src for k, src in sources.items() if k.startswith(key + ".")), "default"
    )


def _describe(error: ValidationError, sources: Mapping[str, str]) -> str:
    """One line for every problem: the key, where its value came from, what is wrong."""
    lines = []
    for problem in error.errors():
        loc = [str(part) for part in problem["loc"] if not isinstance(part, int)]
        key = ".".join(loc)
        where = source_of(key, sources)
        if problem["type"] == "extra_forbidden":
            lines.append(_unknown_key(loc, where))
            continue
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{key} (from {where}): {message}")
    if len(lines) == 1:
        return lines[0]
    return f"{len(lines)} problems in the settings: " + " | ".join(lines)


def _unknown_key(loc: list[str], where: str) -> str:
    """``unknown setting 'from_emial' in crusader-mail.toml [newsletter]; did you mean
    'from_email'?``: the nearest key of the section, else the section the key belongs to."""
    *path, name = loc
    model: type[BaseModel] | None = Settings
    for part in path:
        model = _sections(model).get(part) if model is not None else None
    place = f"{where} [{'.'.join(path)}]" if path else where
    line = f"unknown setting {name!r} in {place}"
    known = _names(model) if model is not None else []
    nearest = _nearest(name.lower(), known)
    if nearest:
        return f"{line}; did you mean {nearest!r}?"
    if path and name.lower() in _names(Settings):
        return (
            f"{line}; {name!r} is a top-level setting: move it above the first [section] "
            "(a key after a [section] line belongs to that section)"
        )
    homes = [
        section for section, kind in _sections(Settings).items() if name.lower() in _names(kind)
    ]
    if homes:
        return f"{line}; did you mean {name!r} in [{homes[0]}]?"
    return f"{line}; the settings there are: {', '.join(known)}" if known else line


def effective_settings(loaded: LoadedSettings) -> list[tuple[str, Any, str]]:
    """(key, value as JSON, source) for every setting, for ``config check``: numbers, booleans,
    lists and ``None`` as they are, paths as text, secrets masked (``**********``)."""
    dumped = loaded.settings.model_dump(mode="json")
    return [
        (key, value, source_of(key, loaded.sources))
        for key, value in sorted(_flatten(dumped).items())
    ]
