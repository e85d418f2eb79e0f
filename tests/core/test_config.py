from __future__ import annotations

import pytest

from batch_transcode import AzureConfig, ConfigError, LocalConfig, RetryPolicy

ENV = {
    "AZURE_BATCH_ENDPOINT": "https://myacct.westeurope.batch.azure.com",
    "AZURE_BATCH_ACCESS_KEY": "c2VjcmV0LWJhdGNoLWtleQ==",
    "AZURE_STORAGE_CONNECTION_STRING": (
        "DefaultEndpointsProtocol=https;AccountName=st;AccountKey=c3RvcmFnZS1rZXk="
    ),
}


def test_local_defaults_and_validation() -> None:
    cfg = LocalConfig()
    assert cfg.workers >= 1
    with pytest.raises(ConfigError, match="workers must be > 0"):
        LocalConfig(workers=0)
    with pytest.raises(ConfigError, match="whole number"):
        LocalConfig(workers=2.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        LocalConfig(4)  # type: ignore[misc]  # keyword-only


def test_configs_are_frozen() -> None:
    import attrs

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        LocalConfig().workers = 3  # type: ignore[misc]


def test_from_env_reads_conventional_variables() -> None:
    cfg = AzureConfig.from_env(ENV)
    assert cfg.batch_endpoint == ENV["AZURE_BATCH_ENDPOINT"]
    assert cfg.batch_account == "myacct"
    assert cfg.batch_key == ENV["AZURE_BATCH_ACCESS_KEY"]
    assert cfg.batch_key is not None


def test_from_env_names_every_missing_variable() -> None:
    with pytest.raises(ConfigError) as info:
        AzureConfig.from_env({})
    assert "AZURE_BATCH_ENDPOINT" in str(info.value)
    assert "AZURE_STORAGE_CONNECTION_STRING" in str(info.value)
    with pytest.raises(ConfigError) as info:
        AzureConfig.from_env({"AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    assert "AZURE_BATCH_ENDPOINT" in str(info.value)
    assert "AZURE_STORAGE_CONNECTION_STRING" not in str(info.value)


def test_from_env_without_key_means_entra_id() -> None:
    env = {k: v for k, v in ENV.items() if k != "AZURE_BATCH_ACCESS_KEY"}
    assert AzureConfig.from_env(env).batch_key is None


def test_loopback_endpoint_with_key_needs_account() -> None:
    env = dict(ENV, AZURE_BATCH_ENDPOINT="http://127.0.0.1:8080")
    with pytest.raises(ConfigError, match="AZURE_BATCH_ACCOUNT"):
        AzureConfig.from_env(env)
    assert AzureConfig.from_env(dict(env, AZURE_BATCH_ACCOUNT="dev")).batch_account == "dev"


def test_secrets_are_redacted_in_repr() -> None:
    cfg = AzureConfig.from_env(ENV)
    text = repr(cfg) + str(cfg)
    assert ENV["AZURE_BATCH_ACCESS_KEY"] not in text
    assert "c3RvcmFnZS1rZXk=" not in text
    assert "AccountKey" not in text


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_endpoint": "myacct.batch.azure.com"}, "https URL"),
        ({"pool_id": "bad pool!"}, "valid Batch pool id"),
        ({"pool_id": "p1", "auto_pool": True}, "not both"),
        ({"dedicated_nodes": 0, "spot_nodes": 0}, "no nodes"),
        ({"task_slots_per_node": 300}, "<= 256"),
        ({"max_task_retry_count": -2}, "-1 for unlimited"),
        ({"resource_prefix": "Bad_Prefix"}, "resource_prefix"),
        ({"input_container": "Bad--Name"}, "container name"),
        ({"task_timeout": 10.0, "session_timeout": 5.0}, "task_timeout"),
    ],
)
def test_azure_config_validation_says_what_to_do(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        AzureConfig.from_env(ENV, **overrides)


def test_no_storage_is_an_error() -> None:
    with pytest.raises(ConfigError, match="storage"):
        AzureConfig(batch_endpoint="https://a.b.batch.azure.com", batch_key="k")


def test_retry_policy_validation() -> None:
    assert RetryPolicy().attempts > 1
    with pytest.raises(ConfigError):
        RetryPolicy(attempts=0)
