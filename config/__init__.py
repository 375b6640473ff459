"""Settings: LiteLLM-style YAML loading, environment overrides, example configs."""

from config.settings import (
    ENDPOINTS,
    Deployment,
    FilesSettings,
    GeneralSettings,
    LiteLLMSettings,
    Provider,
    QueueSettings,
    RouterSettings,
    Secret,
    ServerSettings,
    Settings,
)

__all__ = [
    "ENDPOINTS",
    "Deployment",
    "FilesSettings",
    "GeneralSettings",
    "LiteLLMSettings",
    "Provider",
    "QueueSettings",
    "RouterSettings",
    "Secret",
    "ServerSettings",
    "Settings",
]
