"""Settings of the four providers, and the environment variables that set them."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec

__all__ = [
    "DEFAULT_MODELS",
    "ENV",
    "Account",
    "AzureConfig",
    "ProviderConfig",
    "ProvidersConfig",
    "Secret",
    "vendor_of",
]

Positive = Annotated[int, msgspec.Meta(gt=0)]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class Secret(str):
    """A string that never shows itself in a repr (API keys)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'" if self else "''"


class ProviderConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One provider. No ``api_key``: the provider is not enabled."""

    api_key: Secret = Secret("")
    # Empty: the SDK's own (the real API). A proxy, a regional endpoint or the
    # simulator (for OpenAI include the /v1: http://127.0.0.1:8100/v1).
    base_url: str = ""
    default_model: str = ""  # empty: DEFAULT_MODELS
    # The longest one attempt may take (the SDK's timeout, and a cap on the router's
    # attempt budget).
    timeout_ms: Positive = 60_000
    # A stream's first text must come within this, else the attempt is cut off and
    # the next candidate tried (a provider that accepted the call and hangs).
    first_token_timeout_ms: Positive = 30_000
    # The SDK's own retries stay off; this many retries are the breaker's to make.
    max_retries: NonNegative = 2
    # What the provider grants this key or resource (its own rate limits): calls that
    # would go over are never made, counted across processes (None: no limit known).
    requests_per_minute: Grant | None = None
    tokens_per_minute: Grant | None = None
    # More deployments of this provider (other keys, organizations, resources or
    # regions), each named "provider:name", with its own breaker, health and limits:
    # each table changes what it names of this section.
    accounts: dict[AccountName, Account] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.api_key)

    def account(self, name: str, given: Account) -> ProviderConfig:
        """This section with one account's changes (``ValueError`` naming the field
        the provider does not have)."""
        changes = {f: v for f in given.__struct_fields__
                   if (v := getattr(given, f)) is not msgspec.UNSET}  # fmt: skip
        try:
            return msgspec.structs.replace(self, accounts={}, **changes)
        except TypeError:
            own = set(self.__struct_fields__)
            wrong = sorted(set(changes) - own)
            raise ValueError(f"accounts.{name}: {', '.join(wrong)} is Azure's only") from None


Grant = Annotated[float, msgspec.Meta(gt=0, le=1e12, multiple_of=1)]
AccountName = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9_-]{1,32}$")]


class Account(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Another deployment of a provider: what it changes of the provider's section."""

    api_key: Secret | msgspec.UnsetType = msgspec.UNSET
    base_url: str | msgspec.UnsetType = msgspec.UNSET
    default_model: str | msgspec.UnsetType = msgspec.UNSET
    timeout_ms: Positive | msgspec.UnsetType = msgspec.UNSET
    first_token_timeout_ms: Positive | msgspec.UnsetType = msgspec.UNSET
    max_retries: NonNegative | msgspec.UnsetType = msgspec.UNSET
    requests_per_minute: Grant | msgspec.UnsetType | None = msgspec.UNSET
    tokens_per_minute: Grant | msgspec.UnsetType | None = msgspec.UNSET
    # Azure's only: its deployments there, and its API version.
    deployment: str | msgspec.UnsetType = msgspec.UNSET
    deployments: dict[str, str] | msgspec.UnsetType = msgspec.UNSET
    api_version: str | msgspec.UnsetType = msgspec.UNSET


def vendor_of(name: str) -> str:
    """The provider of a deployment's name (``azure:eastus`` -> ``azure``)."""
    return name.partition(":")[0]


class AzureConfig(ProviderConfig, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Azure OpenAI: ``base_url`` is the resource endpoint (``AZURE_OPENAI_ENDPOINT``)."""

    deployment: str = ""  # the deployment that serves default_model
    # More deployments, by the model each serves: {"gpt-4o" = "my-gpt4o"}.
    deployments: dict[str, str] = {}
    api_version: str = "2024-10-21"

    def deployment_for(self, model: str, default_model: str) -> str | None:
        """The deployment that serves ``model`` (``default_model`` is this provider's
        default, as resolved), or None."""
        if model in self.deployments:
            return self.deployments[model]
        if self.deployment and model in ("", default_model):
            return self.deployment
        return None

    @property
    def enabled(self) -> bool:
        return bool(self.api_key and self.base_url)


# Each provider's model when neither the request nor the config names one: the
# cheapest current model of each (see the catalog).
DEFAULT_MODELS = {
    "openai": "gpt-6-luna",
    "azure": "gpt-6-luna",
    "anthropic": "claude-haiku-5-5",
    "google": "gemini-3.1-flash-lite",
}


class ProvidersConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    openai: ProviderConfig = ProviderConfig()
    azure: AzureConfig = AzureConfig()
    anthropic: ProviderConfig = ProviderConfig()
    google: ProviderConfig = ProviderConfig()

    def __post_init__(self) -> None:
        for name in DEFAULT_MODELS:
            config: ProviderConfig = getattr(self, name)
            for account, given in config.accounts.items():
                try:
                    config.account(account, given)
                except ValueError as exc:
                    raise ValueError(f"providers.{name}.{exc}") from None

    def items(self) -> list[tuple[str, ProviderConfig]]:
        """Every deployment: each provider's own section, then its accounts
        (``provider:account``)."""
        found: list[tuple[str, ProviderConfig]] = []
        for name in DEFAULT_MODELS:
            config: ProviderConfig = getattr(self, name)
            found.append((name, config))
            found += [(f"{name}:{account}", config.account(account, given))
                      for account, given in config.accounts.items()]  # fmt: skip
        return found

    def get(self, name: str) -> ProviderConfig:
        """A deployment's settings (a provider's, or one of its accounts')."""
        vendor, _colon, account = name.partition(":")
        config: ProviderConfig = getattr(self, vendor)
        return config.account(account, config.accounts[account]) if account else config

    def default_model(self, name: str) -> str:
        return self.get(name).default_model or DEFAULT_MODELS[vendor_of(name)]


# Environment variable -> (provider, field). They override the config file.
ENV: dict[str, tuple[str, str]] = {
    "OPENAI_API_KEY": ("openai", "api_key"),
    "OPENAI_BASE_URL": ("openai", "base_url"),
    "OPENAI_DEFAULT_MODEL": ("openai", "default_model"),
    "OPENAI_TIMEOUT_MS": ("openai", "timeout_ms"),
    "OPENAI_FIRST_TOKEN_TIMEOUT_MS": ("openai", "first_token_timeout_ms"),
    "OPENAI_MAX_RETRIES": ("openai", "max_retries"),
    "AZURE_OPENAI_API_KEY": ("azure", "api_key"),
    "AZURE_OPENAI_ENDPOINT": ("azure", "base_url"),
    "AZURE_OPENAI_DEPLOYMENT": ("azure", "deployment"),
    "AZURE_OPENAI_API_VERSION": ("azure", "api_version"),
    "AZURE_OPENAI_DEFAULT_MODEL": ("azure", "default_model"),
    "AZURE_OPENAI_TIMEOUT_MS": ("azure", "timeout_ms"),
    "AZURE_OPENAI_FIRST_TOKEN_TIMEOUT_MS": ("azure", "first_token_timeout_ms"),
    "AZURE_OPENAI_MAX_RETRIES": ("azure", "max_retries"),
    "ANTHROPIC_API_KEY": ("anthropic", "api_key"),
    "ANTHROPIC_BASE_URL": ("anthropic", "base_url"),
    "ANTHROPIC_DEFAULT_MODEL": ("anthropic", "default_model"),
    "ANTHROPIC_TIMEOUT_MS": ("anthropic", "timeout_ms"),
    "ANTHROPIC_FIRST_TOKEN_TIMEOUT_MS": ("anthropic", "first_token_timeout_ms"),
    "ANTHROPIC_MAX_RETRIES": ("anthropic", "max_retries"),
    "GOOGLE_API_KEY": ("google", "api_key"),
    "GOOGLE_BASE_URL": ("google", "base_url"),
    "GOOGLE_DEFAULT_MODEL": ("google", "default_model"),
    "GOOGLE_TIMEOUT_MS": ("google", "timeout_ms"),
    "GOOGLE_FIRST_TOKEN_TIMEOUT_MS": ("google", "first_token_timeout_ms"),
    "GOOGLE_MAX_RETRIES": ("google", "max_retries"),
}

_INTEGER_FIELDS = {"timeout_ms", "first_token_timeout_ms", "max_retries"}


def apply_env(raw: dict[str, Any], env: dict[str, str]) -> None:
    """Write the provider variables found in ``env`` into the raw config mapping.

    Raises ``ValueError`` naming the variable when a number is not a number.
    """
    providers = raw.setdefault("providers", {})
    if not isinstance(providers, dict):
        return  # the file's own type error is reported by the decoder
    for variable, (provider, field) in ENV.items():
        value = env.get(variable)
        if value is None or value == "":
            continue
        section = providers.setdefault(provider, {})
        if not isinstance(section, dict):
            return
        if field in _INTEGER_FIELDS:
            try:
                section[field] = int(value)
            except ValueError:
                raise ValueError(f"{variable} must be a whole number, not {value!r}") from None
        else:
            section[field] = value


def decode_hook(kind: type, value: Any) -> Any:
    """Lets msgspec build ``Secret`` values from strings."""
    if kind is Secret:
        if not isinstance(value, str):
            raise ValueError("expected a string")
        return Secret(value)
    raise NotImplementedError(kind)
