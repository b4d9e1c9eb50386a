"""One settings object for every process: ports, URLs and credentials, all overridable with `CHIRP_*`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHIRP_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = "prod"
    home: Path = Field(default=Path.home() / ".cache" / "chirp", description="State outside the repo")

    # Kafka
    kafka_version: str = "4.3.1"
    kafka_host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    kafka_bootstrap: str = ""  # defaults to kafka_host:kafka_port

    # Redis
    redis_host: str = "127.0.0.1"
    redis_port: int = 6379
    redis_db: int = 0

    # PostgreSQL
    postgres_host: str = "127.0.0.1"
    postgres_port: int = 5433
    postgres_user: str = "chirp"
    postgres_password: SecretStr = SecretStr("chirp")
    postgres_db: str = "chirp"
    postgres_test_db: str = "chirp_test"
    # The server `chirp services` starts listens on loopback only: TLS there costs CPU and protects nothing. Set
    # `verify-full` (with the server's CA in libpq's usual place) for a server across a network.
    postgres_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = "disable"

    # ArangoDB (optional adapter; tests run only when set)
    arango_url: str = ""
    arango_db: str = "chirp"
    arango_user: str = "root"
    arango_password: SecretStr = SecretStr("")

    # Gateway
    host: str = "127.0.0.1"
    port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    # Gateway under faults and abuse (gateway/limits.py, gateway/server.py, gateway/errors.py)
    http_max_body_bytes: int = Field(
        default=64 * 1024, description="Largest request body (routes may allow less): 413 past it, before reading"
    )
    http_max_head_bytes: int = Field(
        default=16 * 1024, description="Largest request line plus headers (at most 100 fields); 400 and closed past it"
    )
    http_head_timeout_s: int = Field(
        default=5, description="Seconds a connection may take to send a complete request head (and keep-alive idle)"
    )
    http_body_timeout_s: float = Field(
        default=10.0, description="Seconds a request may take to send its whole body once the head arrived (408)"
    )
    publish_timeout_s: float = Field(
        default=1.5, description="Seconds a write waits for Kafka's acknowledgement before answering 503"
    )
    store_connect_timeout_s: float = Field(
        default=1.0, description="Seconds the gateway waits to connect to Redis or PostgreSQL before answering 503"
    )
    store_command_timeout_s: float = Field(
        default=5.0, description="Seconds the gateway waits for one Redis or PostgreSQL command before answering 503"
    )
    unavailable_retry_after_s: int = Field(
        default=5, description="`Retry-After` of a 503 when a store or Kafka is unavailable"
    )
    log_repeat_window_s: float = Field(
        default=10.0, description="An identical failure (event and error) is logged at most once per this window"
    )

    # Identity
    github_client_id: str = ""
    github_client_secret: SecretStr = SecretStr("")
    github_authorize_url: str = "https://github.com/login/oauth/authorize"
    github_token_url: str = "https://github.com/login/oauth/access_token"
    github_api_url: str = "https://api.github.com"
    jwt_issuer: str = "chirp"
    jwt_audience: str = "chirp"
    jwt_private_key_file: Path | None = None  # generated under `home` when unset
    access_token_minutes: int = 15
    jwt_leeway_seconds: int = 5
    refresh_token_days: int = 30
    github_scope: str = "read:user user:email"
    oauth_state_seconds: int = 600  # how long a GitHub login may take between redirect and callback

    # Rate limits (gateway/ratelimit.py): action -> (tokens per second, burst), overriding its built-in tables
    ratelimits: dict[str, tuple[float, int]] = Field(default_factory=dict)  # per user
    ratelimits_ip: dict[str, tuple[float, int]] = Field(default_factory=dict)  # per client address
    ratelimit_scale: float | None = None  # multiplies every limit; None: 1 in prod, 1000 in dev and test

    # Consumer runtime
    consumer_group_prefix: str = ""  # each consumer's group is this + its name (tests use their own: "test-")
    consumer_max_attempts: int = 5
    consumer_retry_base_ms: int = 100
    consumer_retry_max_ms: int = 5_000
    # After this many events in a row dead-lettered for handler errors (a bug, not bad events), the next failing
    # event is held and tried again every `consumer_breaker_retry_ms` instead (0: never hold).
    consumer_breaker_after: int = 10
    consumer_breaker_retry_ms: int = 30_000
    consumer_batch_size: int = 500
    consumer_batch_timeout_ms: int = 50
    replay_batch_size: int = 2_000  # a replay reads a backlog: larger batches, fewer round trips per event
    metrics_port: int = 9400  # first consumer metrics port; `--all` uses this one

    # Product knobs
    fanout_max_followers: int = 5_000
    timeline_length: int = 800

    @cached_property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap or f"{self.kafka_host}:{self.kafka_port}"

    def group(self, consumer: str) -> str:
        """The Kafka consumer group of the consumer named `consumer`."""
        return f"{self.consumer_group_prefix}{consumer}"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_host}:{self.redis_port}/{self.redis_db}"

    def postgres_dsn(self, db: str | None = None) -> str:
        password = self.postgres_password.get_secret_value()
        return (
            f"postgresql://{self.postgres_user}:{password}@{self.postgres_host}:{self.postgres_port}/"
            f"{db or self.postgres_db}?sslmode={self.postgres_sslmode}"
        )

    @property
    def dev(self) -> bool:
        return self.env == "dev"
