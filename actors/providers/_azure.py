"""Azure OpenAI through ``openai.AsyncAzureOpenAI``: OpenAI's API on deployments."""

from __future__ import annotations

import openai

from ._catalog import Catalog
from ._config import AzureConfig
from ._errors import BadRequest
from ._openai import OpenAIAdapter

__all__ = ["AzureOpenAIAdapter"]


class AzureOpenAIAdapter(OpenAIAdapter):
    """OpenAI's models on an Azure resource; each model is served by a deployment.

    ``deployment`` serves the default model, ``deployments`` maps other models to
    theirs; a model with no deployment is a ``BadRequest``.
    """

    name = "azure"
    config: AzureConfig
    direct = False  # its deployment URLs, api-key header and api-version: the SDK's

    def __init__(self, config: AzureConfig, catalog: Catalog, default_model: str) -> None:
        super().__init__(config, catalog, default_model)

    def _client(self) -> openai.AsyncOpenAI:
        return openai.AsyncAzureOpenAI(
            azure_endpoint=self.config.base_url,
            api_version=self.config.api_version,
            api_key=str(self.config.api_key),
            timeout=self.timeout,
            max_retries=0,
            http_client=openai.DefaultAioHttpClient(),
        )

    def probe_models(self) -> list[str]:
        """One model per deployment: a completion probe checks every deployment."""
        models = list(self.config.deployments)
        if self.config.deployment and self.default_model not in models:
            models.insert(0, self.default_model)
        return models or [self.default_model]

    def _target(self, model: str) -> str:
        deployment = self.config.deployment_for(model, self.default_model)
        if deployment is None:
            raise BadRequest(self.name, f"no Azure deployment serves model {model!r}")
        return deployment
