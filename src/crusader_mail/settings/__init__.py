"""Typed settings: ``crusader-mail.toml``, overridden by ``.env``, overridden by the environment.

Where a value comes from, highest first (each a pydantic-settings source, see :func:`load_settings`):

1. environment ``CRUSADER_MAIL_<NAME>`` (sections joined with ``__``: ``CRUSADER_MAIL_SENDGRID__API_KEY``;
   lists as JSON: ``CRUSADER_MAIL_FEEDS='["https://example.com/feed"]'``)
2. the ``.env`` file beside the config file (same names)
3. the conventional ``SENDGRID_API_KEY`` (environment, then ``.env``) for ``sendgrid.api_key``
4. the TOML config file: ``--config PATH``, else ``$CRUSADER_MAIL_CONFIG``, else ``./crusader-mail.toml``
5. the defaults below

Relative paths are taken relative to the config file's folder. Secrets are ``SecretStr``: they
print as ``**********`` and only :meth:`SecretStr.get_secret_value` reveals them. They come
from the environment or ``.env`` only: one in the TOML file is refused (:func:`secret_keys`).

Mistakes are caught when the settings load, each naming the key and where its value came from:
a value a send would fail on (a sender that is no address, a URL without its scheme, an http
one-click link, a short secret key, a subject that is no template), an unknown key in the TOML
file (with the nearest known key), a list variable that is not JSON (naming the variable). An
unknown ``CRUSADER_MAIL_*`` name in the environment or ``.env`` is ignored with a warning
(:attr:`LoadedSettings.warnings`), the nearest known name suggested.
"""

from crusader_mail.settings.loading import (
    ENVIRONMENT,
    LoadedSettings,
    effective_settings,
    env_name,
    find_config,
    known_env_names,
    load_settings,
    secret_keys,
    source_of,
)
from crusader_mail.settings.model import ByMail, Leaving, OneClick, Settings
from crusader_mail.settings.sections import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ENV_PREFIX,
    MIN_SECRET_KEY,
    SENDGRID_API_KEY,
    CadenceSettings,
    ComposeSettings,
    FetchSettings,
    ImapSettings,
    NewsletterSettings,
    Section,
    SendGridSettings,
    ServerSettings,
)

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG",
    "ENVIRONMENT",
    "ENV_PREFIX",
    "MIN_SECRET_KEY",
    "SENDGRID_API_KEY",
    "ByMail",
    "CadenceSettings",
    "ComposeSettings",
    "FetchSettings",
    "ImapSettings",
    "Leaving",
    "LoadedSettings",
    "NewsletterSettings",
    "OneClick",
    "Section",
    "SendGridSettings",
    "ServerSettings",
    "Settings",
    "effective_settings",
    "env_name",
    "find_config",
    "known_env_names",
    "load_settings",
    "secret_keys",
    "source_of",
]
