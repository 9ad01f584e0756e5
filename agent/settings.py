"""The run settings, owned by the front doors: every setting typed (pydantic-settings), resolved
from four layers, highest first: explicit (a CLI flag, a Python argument) > environment (FTAGENT_*)
> config file (<home>/config.yaml or $FTAGENT_CONFIG) > default. `resolve_settings` records where
each value came from (`Settings.origins`, shown by `ftagent config show`). The graph receives the
result inside its JobContext and never resolves settings itself."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, PrivateAttr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from tools.hardware import Precision
from tools.home import HomeLayout, JobPaths
from tools.stores.sql_table import check_database_url

DEFAULT_HOME = "~/.ftagent"
CONFIG_ENV = "FTAGENT_CONFIG"  # another config file than <home>/config.yaml
# The environment variable of each setting that has one.
ENVIRONMENT = {
    "home": "FTAGENT_HOME",
    "threads": "FTAGENT_THREADS",
    "precision": "FTAGENT_PRECISION",
    "chat_model": "FTAGENT_CHAT_MODEL",
    "chat_base_url": "FTAGENT_CHAT_BASE_URL",
    "chat_api_key": "FTAGENT_CHAT_API_KEY",
    "chat_timeout_s": "FTAGENT_CHAT_TIMEOUT",
    "embedding_model": "FTAGENT_EMBEDDING_MODEL",
    "network": "FTAGENT_NETWORK",
    "http_contact": "FTAGENT_HTTP_CONTACT",
    "http_timeout_s": "FTAGENT_HTTP_TIMEOUT",
    "http_retries": "FTAGENT_HTTP_RETRIES",
    "ncbi_email": "FTAGENT_NCBI_EMAIL",
    "ncbi_api_key": "FTAGENT_NCBI_API_KEY",
    "arxiv_url": "FTAGENT_ARXIV_URL",
    "pubmed_url": "FTAGENT_PUBMED_URL",
    "wikipedia_url": "FTAGENT_WIKIPEDIA_URL",
    "document_roots": "FTAGENT_DOCUMENT_ROOTS",
    "max_download_mb": "FTAGENT_MAX_DOWNLOAD_MB",
    "max_request_bytes": "FTAGENT_MAX_REQUEST_BYTES",
    "serving_api_key": "FTAGENT_SERVING_API_KEY",
    "database_url": "FTAGENT_DATABASE_URL",
    "job_lease_s": "FTAGENT_JOB_LEASE",
    "chroma_url": "FTAGENT_CHROMA_URL",
    "hub_downloads": "FTAGENT_HUB_DOWNLOADS",
    "tracking": "FTAGENT_TRACKING",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI",
    "api_token": "FTAGENT_API_TOKEN",
    "slack_bot_token": "SLACK_BOT_TOKEN",
    "slack_signing_secret": "SLACK_SIGNING_SECRET",
    "slack_app_token": "SLACK_APP_TOKEN",
}
# never printed: `config show` and `config init` write *** or leave them out
SECRET_SETTINGS = ("chat_api_key", "ncbi_api_key", "serving_api_key", "database_url", "api_token",
                   "slack_bot_token", "slack_signing_secret", "slack_app_token")
DEFAULT_ORIGIN = "default"


class Settings(BaseSettings):
    """Every setting, typed. A Settings built directly (tests, scripts) holds exactly what it is
    given and the defaults; `resolve_settings` layers the flags, the environment and the config file
    on top."""

    # a misspelt setting is refused, never dropped; a Settings(...) call reads no environment by
    # itself
    model_config = SettingsConfigDict(extra="forbid")

    home: Path = Path(DEFAULT_HOME).expanduser()
    threads: int | None = None
    # compute precision of training, evaluation and serving: fp32, bf16 (autocast), or auto (bf16
    # where the hardware has it natively); a job's own training.precision, when not auto, wins for
    # that job
    precision: Precision = "auto"
    chat_model: str | None = None  # any OpenAI-compatible chat model; None = deterministic policies
    chat_base_url: str | None = None
    chat_api_key: str | None = None
    # seconds one chat-model request (a decision, a judge grade) may take before it counts as
    # "timeout"
    chat_timeout_s: float = Field(30.0, gt=0)
    embedding_model: str | None = None  # a sentence-transformers folder; None = the embedded MiniLM
    # Remote sources (arXiv, PubMed, Wikipedia, web). network=False: never try them (air-gapped
    # machines).
    network: bool = True
    http_contact: str | None = None  # User-Agent contact (URL or e-mail); None = the project URL
    http_timeout_s: float = 30.0
    http_retries: int = 3  # extra attempts after the first, on 429/5xx/timeouts
    http_backoff_s: float = 1.0  # first retry wait; doubles each retry unless Retry-After says
    # None = each service's own pace (arXiv 3 s, PubMed 1/3 s)
    http_min_interval_s: float | None = None
    ncbi_email: str | None = None  # NCBI asks E-utilities clients for a contact address
    ncbi_api_key: str | None = None  # raises PubMed's rate limit from 3/s to 10/s; never logged
    # base URL overrides (mirrors, proxies, tests); None = the public API
    arxiv_url: str | None = None
    pubmed_url: str | None = None
    wikipedia_url: str | None = None
    # base models named by a Hugging Face id may be downloaded from the Hub (off: only the local
    # cache)
    hub_downloads: bool = False
    # experiment tracking: TensorBoard event files always; "mlflow" also logs each training round to
    # MLflow (mlflow_tracking_uri, $MLFLOW_TRACKING_URI; None = a file store in <home>/mlruns)
    tracking: Literal["tensorboard", "mlflow"] = "tensorboard"
    mlflow_tracking_uri: str | None = None
    # `ftagent serve`: A/B splits {public name: {version: weight}}; a --ab of the same name
    # overrides one
    serving_ab_splits: dict[str, dict[str, float]] = {}
    # -- running it for a team (remote doors: HTTP API, Slack, chat over HTTP) --
    # folders remote callers may name as docs_path, besides <home>/documents
    # ($FTAGENT_DOCUMENT_ROOTS: os.pathsep-separated)
    document_roots: list[Path] = []
    max_download_mb: float = Field(20.0, gt=0)  # the largest body the HTTP layer reads
    # the largest request body the API accepts (413)
    max_request_bytes: int = Field(1_000_000, ge=1024)
    serving_api_key: str | None = None  # `ftagent serve`: required on /admin/* and /v1/* when set
    # the admin's bearer token of `ftagent api` and `ftagent mcp --http` (a --token-file wins; None:
    # <home>/api_token, created on first use)
    api_token: str | None = None
    # the Slack app's credentials (api.slack.com/apps): the bot token (xoxb-...), the signing secret,
    # and for Socket Mode the app-level token (xapp-...)
    slack_bot_token: str | None = None
    slack_signing_secret: str | None = None
    slack_app_token: str | None = None
    slack_allowed_teams: list[str] = []  # Slack workspace ids the bot answers; empty = any
    slack_allowed_channels: list[str] = []  # channel ids; empty = any
    # Slack user id -> ftagent user name; when set, only these users may use the bot
    slack_users: dict[str, str] = {}

    @field_validator("document_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [Path(part).expanduser() for part in value.split(os.pathsep) if part.strip()]
        return value

    # Shared state for several workers and hosts: jobs, queue, checkpoints, registry and feedback in
    # this PostgreSQL database (postgresql://user:password@host:5432/db) instead of
    # <home>/ftagent.sqlite.
    database_url: str | None = None
    # seconds a running job's lease lasts on PostgreSQL (renewed while its worker lives; after a
    # dead worker's lease expires another worker takes the job over)
    job_lease_s: float = Field(60.0, gt=0)
    # a chroma server (http://host:8000) for the chunk store instead of the embedded <home>/chroma
    chroma_url: str | None = None

    @field_validator("database_url")
    @classmethod
    def _postgres_only(cls, url: str | None) -> str | None:
        return check_database_url(url) if url else None

    @field_validator("chroma_url")
    @classmethod
    def _http_only(cls, url: str | None) -> str | None:
        if url and not url.startswith(("http://", "https://")):
            raise ValueError(
                f"chroma_url must be an http:// or https:// URL of a chroma server, not {url!r}"
            )
        return url or None

    _origins: dict[str, str] = PrivateAttr(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        **_: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only what the caller passes: the layers are resolve_settings' business, so a Settings
        built in a test never picks up the machine's environment."""
        return (init_settings,)

    @property
    def origins(self) -> dict[str, str]:
        """Where each setting came from: a CLI flag, an environment variable, the config file, or
        default."""
        return {name: self._origins.get(name, DEFAULT_ORIGIN) for name in type(self).model_fields}

    @property
    def layout(self) -> HomeLayout:
        return HomeLayout(self.home)

    @property
    def database(self) -> Path | str:
        """Where jobs, checkpoints, the registry and feedback live: the PostgreSQL URL when one is
        set, else the SQLite file in the home folder."""
        return self.database_url or self.layout.database

    @property
    def chroma(self) -> Path | str:
        """The chunk store: the chroma server's URL when one is set, else <home>/chroma."""
        return self.chroma_url or self.layout.chroma

    @property
    def http_cache(self) -> Path:
        """Where every job's HTTP answers are cached, so a repeated job downloads nothing twice."""
        return self.layout.http_cache

    @property
    def documents_root(self) -> Path:
        """The folder remote callers' documents go in; always a document root."""
        return self.layout.documents

    def precision_for(self, requested: str = "auto") -> str:
        """The precision a job asked for, or this setting when it asked for "auto" (either may be
        "auto")."""
        return requested if requested != "auto" else self.precision

    def job_paths(self, job_id: str) -> JobPaths:
        return self.layout.job(job_id)


class EnvironmentSource(PydanticBaseSettingsSource):
    """The FTAGENT_* variables (ENVIRONMENT names each setting's), as text; an empty one counts as
    unset. Values are parsed by the settings' own types (FTAGENT_NETWORK=0 is False)."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        variable = ENVIRONMENT.get(field_name, "")
        return (self.environ.get(variable) or None) if variable else None, variable, False

    def __call__(self) -> dict[str, Any]:
        values = {
            name: self.get_field_value(info, name)[0]
            for name, info in self.settings_cls.model_fields.items()
        }
        return {name: value for name, value in values.items() if value is not None}

    def origin(self, name: str) -> str:
        return f"environment variable {ENVIRONMENT[name]}"


class ConfigFileSource(YamlConfigSettingsSource):
    """The YAML config file (a mapping of settings; a missing file holds none). A key that is not a
    setting is refused with its name and the nearest setting's."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path) -> None:
        self.path = path
        super().__init__(settings_cls, yaml_file=path)

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        loaded = super()._read_file(file_path)
        if not isinstance(loaded, dict):
            # a ValueError like every other bad setting (the doors report them as one)
            kind = type(loaded).__name__
            raise ValueError(f"{file_path} must hold a mapping of settings, not {kind}")  # noqa: TRY004
        check_setting_names(loaded, str(file_path))
        return loaded

    def origin(self, name: str) -> str:
        return f"config file {self.path}"


class ExplicitSource(InitSettingsSource):
    """What the caller passed (None: not given); `flags` names the CLI flag behind a value."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        explicit: Mapping[str, Any],
        flags: Mapping[str, str] | None = None,
    ) -> None:
        self.flags = dict(flags or {})
        super().__init__(settings_cls, {k: v for k, v in explicit.items() if v is not None})

    def origin(self, name: str) -> str:
        return f"CLI flag {self.flags[name]}" if name in self.flags else "explicit"


def config_path(home: Path, environ: Mapping[str, str]) -> Path:
    """The config file: $FTAGENT_CONFIG, else <home>/config.yaml."""
    return Path(environ.get(CONFIG_ENV) or HomeLayout(home).config_file).expanduser()


def resolve_settings(
    explicit: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the four layers, highest first: explicit, environment, config file, default;
    each value's origin in `origins` (`flags`: the CLI flag of an explicit value)."""
    environ = os.environ if environ is None else environ
    check_setting_names(explicit or {}, "explicit settings")
    given = ExplicitSource(Settings, explicit or {}, flags)
    from_env = EnvironmentSource(Settings, environ)
    layers: list[tuple[Any, dict[str, Any]]] = [(given, given()), (from_env, from_env())]
    home = Path(
        str(layers[0][1].get("home") or layers[1][1].get("home") or DEFAULT_HOME)
    ).expanduser()
    from_file = ConfigFileSource(Settings, config_path(home, environ))
    layers.append(
        (from_file, {k: v for k, v in from_file().items() if k != "home"})
    )  # the file is in the home
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source, provided in reversed(layers):  # lowest first: a higher layer overwrites
        values |= provided
        origins |= {name: source.origin(name) for name in provided}
    settings = Settings.model_validate({**values, "home": home})
    settings._origins = origins
    return settings


def check_setting_names(values: Mapping[str, Any], where: str) -> None:
    """A ValueError naming each key that is not a setting, with the nearest setting's name."""
    unknown = [str(key) for key in values if key not in Settings.model_fields]
    if unknown:
        raise ValueError(f"{where}: " + "; ".join(_unknown_setting(key) for key in unknown))


def _unknown_setting(key: str) -> str:
    nearest = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
    return f"unknown setting {key!r}" + (f" (did you mean {nearest[0]!r}?)" if nearest else "")


def shown_settings(settings: Settings) -> dict[str, Any]:
    """The settings as `config show` prints them: JSON-like values, secrets as ***."""
    values = settings.model_dump(mode="json")
    return {
        name: ("***" if name in SECRET_SETTINGS and value else value)
        for name, value in values.items()
    }


def settings_yaml(settings: Settings) -> str:
    """Every setting on its own line as YAML, with where its value came from as a comment
    (`network: false  # environment variable FTAGENT_NETWORK`)."""
    origins = settings.origins
    return "".join(
        f"{name}: {_flow(value)}  # {origins[name]}\n"
        for name, value in shown_settings(settings).items()
    )


def _flow(value: Any) -> str:
    """One value in YAML flow style on one line."""
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()
