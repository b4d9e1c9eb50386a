"""One settings object for every process: ports, URLs and credentials, all overridable with `CHIRP_*`."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHIRP_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = Field(
        default="prod",
        description="`dev` turns on the dev login (`POST /auth/dev-login`, the form on /login) and scales rate limits"
        " up 1000x (as `test` does); `make run` sets `dev`. Anything public runs `prod`.",
    )
    home: Path = Field(
        default=Path.home() / ".cache" / "chirp",
        description="State outside the repo: Kafka's jars and data, Redis's append-only file, PostgreSQL's cluster"
        " settings, logs of the local services, the generated JWT signing keys.",
    )

    # Kafka
    kafka_version: str = Field(
        default="4.3.1", description="Kafka release `chirp services up` resolves from Maven Central."
    )
    kafka_host: str = Field(default="127.0.0.1", description="Host the local Kafka broker listens on.")
    kafka_port: int = Field(default=9092, description="Port of the Kafka broker (clients).")
    kafka_controller_port: int = Field(default=9093, description="Port of the local broker's KRaft controller.")
    kafka_brokers: int = Field(
        default=1,
        ge=1,
        le=9,
        description="Brokers of the local cluster (`chirp services up --brokers N`): node i (from 0) serves clients on"
        " kafka_port + 2i and its controller on kafka_controller_port + 2i. With 3 or more, topics are replicated 3"
        " times with `min.insync.replicas=2`, so one broker can stop without losing or refusing an acknowledged event.",
    )
    kafka_bootstrap: str = Field(
        default="",
        description="Bootstrap servers `host:port[,host:port]` of another cluster; empty: kafka_host:kafka_port.",
    )

    # Redis
    redis_host: str = Field(default="127.0.0.1", description="Redis host.")
    redis_port: int = Field(default=6379, description="Redis port.")
    redis_db: int = Field(default=0, description="Redis database number (the app uses 0, the tests 1).")
    redis_cluster: bool = Field(
        default=False,
        description="Redis is a Redis Cluster: every process connects with redis-py's cluster client to"
        " redis_host:redis_cluster_port (one node; the client finds the others) and database 0. Keys are hash-tagged"
        " per user, post or model, so every script and multi-key command stays within one slot (docs/scaling.md).",
    )
    redis_cluster_port: int = Field(
        default=7000,
        description="First port of the local three-master Redis Cluster (`chirp services up --redis-cluster`): its"
        " nodes listen on this port and the next two.",
    )

    # PostgreSQL
    postgres_host: str = Field(default="127.0.0.1", description="PostgreSQL host.")
    postgres_port: int = Field(default=5433, description="PostgreSQL port (the local cluster `chirp` listens on 5433).")
    postgres_user: str = Field(default="chirp", description="PostgreSQL role.")
    postgres_password: SecretStr = Field(default=SecretStr("chirp"), description="PostgreSQL password.")
    postgres_db: str = Field(default="chirp", description="The app's database.")
    postgres_test_db: str = Field(
        default="chirp_test", description="The tests' database, recreated empty by every test run (never the app's)."
    )
    # The server `chirp services` starts listens on loopback only: TLS there costs CPU and protects nothing.
    postgres_sslmode: Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] = Field(
        default="disable",
        description="libpq's sslmode; set `verify-full` (with the server's CA in libpq's usual place) for a server"
        " across a network.",
    )

    # Where the read models the ArangoDB adapter covers live (store/backends.py: the posts read model)
    store: Literal["postgres", "arango"] = Field(
        default="postgres",
        description="Store of the posts read model: `postgres`, or `arango` (ArangoDB at CHIRP_ARANGO_URL). Every"
        " other read model stays in PostgreSQL and Redis either way.",
    )
    # ArangoDB (optional adapter; its contract tests run only when set)
    arango_url: str = Field(
        default="",
        description="ArangoDB server: the posts read model's when CHIRP_STORE=arango; empty: the ArangoDB contract"
        " tests are skipped.",
    )
    arango_db: str = Field(default="chirp", description="ArangoDB database (created when missing).")
    arango_user: str = Field(default="root", description="ArangoDB user.")
    arango_password: SecretStr = Field(default=SecretStr(""), description="ArangoDB password.")

    # Gateway
    host: str = Field(
        default="127.0.0.1",
        description="Address the gateway and the consumers' /metrics listen on (0.0.0.0 in containers).",
    )
    port: int = Field(default=8000, description="Port of the gateway (HTTP API and pages).")
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="The URL browsers use: the origin checked against CSRF, GitHub's callback base; `https://` makes"
        " cookies `Secure`.",
    )
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
    github_client_id: str = Field(
        default="", description="Client id of your GitHub OAuth app (callback `<public_url>/auth/github/callback`)."
    )
    github_client_secret: SecretStr = Field(
        default=SecretStr(""), description="Client secret of that GitHub OAuth app."
    )
    github_authorize_url: str = Field(
        default="https://github.com/login/oauth/authorize",
        description="GitHub's authorization endpoint (tests point it at a fake).",
    )
    github_token_url: str = Field(
        default="https://github.com/login/oauth/access_token", description="GitHub's token endpoint."
    )
    github_api_url: str = Field(default="https://api.github.com", description="GitHub's REST API (user and e-mails).")
    jwt_issuer: str = Field(default="chirp", description="`iss` of the access tokens the gateway signs and accepts.")
    jwt_audience: str = Field(default="chirp", description="`aud` of the access tokens the gateway signs and accepts.")
    jwt_private_key_file: Path | None = Field(
        default=None,
        description="PEM private key signing access tokens (rotate: replace the file, restart); unset: keys are"
        " generated and rotated under `home`/keys.",
    )
    access_token_minutes: int = Field(default=15, description="Lifetime of an access token.")
    jwt_leeway_seconds: int = Field(default=5, description="Clock skew tolerated on `exp`, `nbf` and `iat`.")
    refresh_token_days: int = Field(default=30, description="Lifetime of a refresh session (a login).")
    github_scope: str = Field(default="read:user user:email", description="OAuth scopes asked of GitHub.")
    oauth_state_seconds: int = Field(
        default=600, description="How long a GitHub login may take between the redirect and the callback."
    )

    # Erasure (docs/erasure.md)
    erasure_delay_s: float = Field(
        default=86_400,
        description="Seconds from an account deletion or a post deletion until its erasure keys are deleted (its"
        " content unreadable in Kafka and skipped by every replay).",
    )
    erasure_poll_s: float = Field(
        default=5.0, description="How often the erasure consumer looks for erasures that are due."
    )
    erasure_key_cache_s: float = Field(
        default=60.0,
        description="Seconds a process keeps an erasure key in memory (an erased key leaves every cache by then).",
    )
    erasure_lost_keys: Literal["wait", "skip"] = Field(
        default="wait",
        description="An event sealed with a key missing from the key store: `wait` (an outage until the store is"
        " restored) or `skip` (read it as erased: only for a stack whose key store is thrown away on purpose).",
    )
    erasure_seal: bool = Field(
        default=True,
        description="Seal personal fields when publishing. `false` publishes in clear, which no erasure can reach:"
        " only to measure what sealing costs (bench/rebuild.py and bench/pipeline.py `--clear`).",
    )
    handle_quarantine_days: int = Field(
        default=30, description="Days a deleted account's handle cannot be registered again (impersonation)."
    )

    # Rate limits (gateway/ratelimit.py): action -> (tokens per second, burst), overriding its built-in tables
    ratelimits: dict[str, tuple[float, int]] = Field(
        default_factory=dict,
        description='Per-user limits overriding gateway/ratelimit.py\'s table, as JSON: `{"post": [0.2, 10]}`'
        " (action: tokens per second, burst).",
    )
    ratelimits_ip: dict[str, tuple[float, int]] = Field(
        default_factory=dict, description="Per-client-address limits overriding the built-in table, same form."
    )
    ratelimit_scale: float | None = Field(
        default=None, description="Multiplies every rate limit; unset: 1 in prod, 1000 in dev and test."
    )

    # Consumer runtime
    consumer_group_prefix: str = Field(
        default="",
        description="Each consumer's Kafka group is this + its name (the tests use `test-`); set your own to run"
        " consumers beside someone else's on a shared broker.",
    )
    consumer_groups: dict[str, str] = Field(
        default_factory=dict,
        description='Kafka group of a consumer, by name, as JSON: `{"mentions": "ann-mentions"}` (default: the'
        " prefix + its name); `chirp consume NAME --group G` sets it.",
    )
    consumer_max_attempts: int = Field(
        default=5, description="Tries of an event whose handler fails before it is dead-lettered."
    )
    consumer_retry_base_ms: int = Field(default=100, description="First backoff between tries (then doubling).")
    consumer_retry_max_ms: int = Field(default=5_000, description="Longest backoff between tries.")
    consumer_breaker_after: int = Field(
        default=10,
        description="After this many events in a row dead-lettered for handler errors (a bug, not bad events), the"
        " next failing event is held and tried again every `consumer_breaker_retry_ms` (0: never hold).",
    )
    consumer_breaker_retry_ms: int = Field(default=30_000, description="How often a held event is tried again.")
    consumer_batch_size: int = Field(default=500, description="Most events a consumer takes per poll (one batch).")
    consumer_batch_timeout_ms: int = Field(default=50, description="How long a poll waits to fill a batch.")
    consumer_gather_ms: int = Field(
        default=40,
        description="While events keep coming, how long Kafka holds a fetch of a consumer that gathers batches"
        " (search, trending, timelines) unless `consumer_gather_bytes` arrive first; the first event after a"
        " quiet spell is fetched at once. Consumers that do not gather fetch each event at once.",
    )
    consumer_brief_gather_ms: int = Field(
        default=10,
        description="The same for consumers that gather briefly (notifications, interactions): their readers wait"
        " for likes and notifications, so they hold a fetch for less.",
    )
    consumer_gather_bytes: int = Field(
        default=64 * 1024, description="Bytes that end a gathering consumer's fetch before `consumer_gather_ms`."
    )
    consumer_commit_interval_ms: int = Field(
        default=500,
        description="Handled offsets are committed at most this often (0: after every batch); a crash redelivers"
        " at most this much, which idempotent handlers absorb.",
    )
    replay_batch_size: int = Field(
        default=2_000,
        description="Events per batch in a replay (a backlog: larger batches, fewer round trips per event).",
    )
    metrics_port: int = Field(
        default=9400,
        description="Port of the first consumer process's /metrics (the next free one after it for others).",
    )
    ready_consumers: tuple[str, ...] = Field(
        default=(
            "preparse",
            "posts",
            "users",
            "timelines",
            "search",
            "trending",
            "notifications",
            "suggestions",
            "interactions",
            "erasure",
            "relations",
            "moderation",
        ),
        description="Consumers whose groups `/readyz` reports (no member, or lag above `ready_max_lag`: degraded).",
    )
    ready_max_lag: int = Field(default=10_000, description="Lag above which `/readyz` calls a consumer group degraded.")
    ready_cache_s: float = Field(default=5.0, description="How long `/readyz` reuses Kafka's answer about the groups.")

    # Product knobs
    fanout_max_followers: int = Field(
        default=5_000,
        description="Authors with more followers are not fanned out to timelines; readers merge their posts instead.",
    )
    timeline_length: int = Field(default=800, description="Posts kept per home timeline in Redis.")

    @cached_property
    def bootstrap_servers(self) -> str:
        ports = (self.kafka_port + 2 * i for i in range(self.kafka_brokers))
        return self.kafka_bootstrap or ",".join(f"{self.kafka_host}:{port}" for port in ports)

    def group(self, consumer: str) -> str:
        """The Kafka consumer group of the consumer named `consumer`."""
        return self.consumer_groups.get(consumer) or f"{self.consumer_group_prefix}{consumer}"

    @property
    def redis_url(self) -> str:
        if self.redis_cluster:  # a cluster has database 0 only
            return f"redis://{self.redis_host}:{self.redis_cluster_port}/0"
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

    @model_validator(mode="after")
    def _store_has_a_server(self) -> Settings:
        if self.store == "arango" and not self.arango_url:
            raise ValueError("CHIRP_STORE=arango needs CHIRP_ARANGO_URL (the ArangoDB server)")
        return self


def refusal(error: ValidationError) -> str:
    """Settings the environment got wrong, in one line: `CHIRP_STORE: Input should be 'postgres' or 'arango'
    (got 'mongo')`."""
    parts = []
    for found in error.errors():
        name = "CHIRP_" + str(found["loc"][0]).upper() if found["loc"] else ""
        got = f" (got {found['input']!r})" if name and not isinstance(found["input"], dict) else ""
        message = str(found["msg"]).removeprefix("Value error, ")
        parts.append(f"{name}: {message}{got}" if name else message)
    return "invalid settings: " + "; ".join(parts)
