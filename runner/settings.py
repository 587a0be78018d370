"""Operator settings: one `Settings`, read from `RUNNER_*` environment variables and `.env`.

Nothing reads the environment anywhere else. Apps take a `Settings` (built by `get_settings()`
by default) so tests pass their own. Every request limit has a default, which a request may
lower, and a maximum, which it may raise to but never past.
"""

from __future__ import annotations

import os
import socket
import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from runner.browsers import host_entry, parse_origin
from runner.limits import MIN_CPUS, MIN_MEMORY_BYTES, MIN_SCRATCH_BYTES, MIN_TIMEOUT_SECONDS
from runner.oauth.policy import OAuthPolicy, check_provider_url
from runner.settings_errors import setting_problems, unknown_variables
from runner.sizes import parse_size
from runner.tenancy import Tenant, parse_token

MiB = 1024 * 1024

StrList = Annotated[list[str], NoDecode]

DEFAULT_CAPABILITIES = ("CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID")
"""What package managers and servers dropping root commonly need; Docker's default set also
grants NET_RAW, MKNOD, SYS_CHROOT, SETFCAP, SETPCAP, NET_BIND_SERVICE and AUDIT_WRITE."""


class Settings(BaseSettings):
    """Every knob an operator has; the README's configuration table mirrors this class."""

    model_config = SettingsConfigDict(
        env_prefix="RUNNER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        populate_by_name=True,
    )

    backend: Literal["docker", "kubernetes"] = Field(
        "docker", description="Which backend runs containers."
    )
    host: str = Field("127.0.0.1", description="Address the REST and MCP servers bind to.")
    port: int = Field(8000, ge=1, le=65535, description="REST API port.")
    api_tokens: StrList = Field(
        default_factory=list,
        description="Bearer tokens accepted on every endpoint but /health (comma-separated); "
        "each is a tenant. `name:token` names the tenant in logs and metrics. "
        "Empty: no authentication, one tenant.",
    )
    api_tokens_file: Path | None = Field(
        None,
        description="File with more bearer tokens (`token` or `name:token`), one per line "
        "(e.g. a mounted Secret).",
    )
    allow_unauthenticated_remote: bool = Field(
        False,
        description="Allow binding to a non-loopback address without API tokens.",
    )
    mcp_port: int = Field(8001, ge=1, le=65535, description="MCP (Streamable HTTP) port.")
    allowed_hosts: StrList = Field(
        default_factory=list,
        validation_alias=AliasChoices("RUNNER_ALLOWED_HOSTS", "RUNNER_MCP_ALLOWED_HOSTS"),
        description="Host headers both doors accept besides loopback names (DNS-rebinding "
        "protection): `name` (any port), `name:port` or `name:*`, comma-separated, e.g. "
        "runner.example.com. Empty with API tokens: any Host. RUNNER_MCP_ALLOWED_HOSTS is an "
        "older name for it.",
    )
    allowed_origins: StrList = Field(
        default_factory=list,
        validation_alias=AliasChoices("RUNNER_ALLOWED_ORIGINS", "RUNNER_MCP_ALLOWED_ORIGINS"),
        description="Web origins whose pages may call both doors besides the runner's own "
        "(they get CORS answers), comma-separated, e.g. https://tools.example.com or "
        "http://localhost:*. Empty: none. RUNNER_MCP_ALLOWED_ORIGINS is an older name for it.",
    )
    operator_tokens: StrList = Field(
        default_factory=list,
        description="Bearer tokens of operators (comma-separated, `token` or `name:token`): "
        "tenants that also see engine-wide listings (every container, every image) and, with "
        "RUNNER_METRICS_TENANTS, the metrics. Without any token the local caller is the "
        "operator.",
    )
    operator_tokens_file: Path | None = Field(
        None, description="File with more operator tokens, one per line (e.g. a mounted Secret)."
    )
    metrics_tenants: bool = Field(
        False,
        description="Label run counts in /metrics with the tenant's name; then, when tokens are "
        "configured, /metrics needs an operator token (RUNNER_OPERATOR_TOKENS).",
    )
    mcp_answer_seconds: float = Field(
        45,
        ge=5,
        le=55,
        description="Every MCP tool call answers within this many seconds: a run still going "
        'then answers "still running" with its run id, and wait_run follows it. Keep it '
        "under your MCP clients' request timeout (60 s in most; lower it for 30 s clients).",
    )
    instance_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()[:54]}-{uuid.uuid4().hex[:8]}",
        description="Names this runner in labels and logs. Ownership does not depend on it "
        "(each runner process holds its own lease), so two runners may share one. Defaults to "
        "the hostname and a random suffix.",
    )

    docker_host: str | None = Field(
        None,
        validation_alias=AliasChoices("RUNNER_DOCKER_HOST", "DOCKER_HOST"),
        description="Engine address (DOCKER_HOST), e.g. unix:///var/run/docker.sock or "
        "tcp://host:2376. Default: the local socket.",
    )
    docker_tls_verify: str | None = Field(
        None,
        validation_alias=AliasChoices("RUNNER_DOCKER_TLS_VERIFY", "DOCKER_TLS_VERIFY"),
        description="Verify the engine's TLS certificate (DOCKER_TLS_VERIFY).",
    )
    docker_cert_path: str | None = Field(
        None,
        validation_alias=AliasChoices("RUNNER_DOCKER_CERT_PATH", "DOCKER_CERT_PATH"),
        description="Folder with ca.pem, cert.pem, key.pem (DOCKER_CERT_PATH).",
    )

    default_timeout_seconds: float = Field(
        60, ge=MIN_TIMEOUT_SECONDS, description="Run timeout when none given."
    )
    max_timeout_seconds: float = Field(
        3600, ge=MIN_TIMEOUT_SECONDS, description="Largest timeout a run may ask."
    )
    default_memory: str = Field("512m", description="Memory limit when none given.")
    max_memory: str = Field("4g", description="Largest memory limit a run may ask.")
    default_cpus: float = Field(1.0, ge=MIN_CPUS, description="CPU limit when none given.")
    max_cpus: float = Field(4.0, ge=MIN_CPUS, description="Largest CPU limit a run may ask.")
    default_scratch_bytes: int = Field(
        1024 * MiB,
        ge=MIN_SCRATCH_BYTES,
        description="Disk a run may write when it asks for none (its `scratch`): its writable "
        "layer, the content it is sent included; bytes or a size such as 1g. Also the largest "
        "file it may write (RLIMIT_FSIZE). Held by the engine's storage quota where it has one, "
        "by sampling and killing elsewhere (see Security: the host's disk).",
    )
    max_scratch_bytes: int = Field(
        8 * 1024 * MiB,
        ge=MIN_SCRATCH_BYTES,
        description="Largest `scratch` a run may ask; bytes or a size such as 8g.",
    )
    max_scratch_files: int = Field(
        200_000,
        ge=1000,
        description="Files and directories a run may make in its writable layer (where the "
        "disk is sampled): past it the run is killed, like past its scratch.",
    )
    pids_limit: int = Field(512, ge=16, description="Process limit inside every container.")
    nofile_limit: int = Field(
        4096, ge=64, description="Open-files limit (ulimit nofile) inside every container."
    )
    cap_add: StrList = Field(
        default_factory=lambda: list(DEFAULT_CAPABILITIES),
        description="Capabilities a container keeps; all others are dropped (comma-separated).",
    )
    no_new_privileges: bool = Field(
        True, description="Forbid setuid binaries from gaining privileges inside containers."
    )
    runtime: str | None = Field(
        None, description="OCI runtime for runs, e.g. runsc (gVisor). Default: the engine's."
    )
    warm_pool: StrList = Field(
        default_factory=list,
        description="Containers (Kubernetes: pods) kept started and waiting for a run, per "
        "image: `image=N[@runtime]`, comma-separated, e.g. `python:3.12-slim=4,busybox:1.36=2`. "
        "A run without a network, named volumes or host paths, on that image and runtime, takes "
        "one instead of creating and starting a container; other runs, and an image without a "
        "POSIX shell, start cold (see Operations: Warm pool; on Kubernetes, synchronous runs "
        "with an entrypoint and the default limits only). Empty: no pool.",
    )
    allowed_runtimes: StrList = Field(
        default_factory=list,
        description="Runtimes a request may choose with `runtime` besides RUNNER_RUNTIME "
        "(comma-separated), e.g. runsc,runc. Empty: requests use RUNNER_RUNTIME.",
    )
    allowed_images: StrList = Field(
        default_factory=lambda: ["*"],
        description="Images a run may use: glob patterns or registry prefixes ending in / "
        "(comma-separated), e.g. docker.io/library/*,registry.example.com/.",
    )
    allowed_registries: StrList = Field(
        default_factory=list,
        description="Registries on non-public addresses that images may come from: `host` or "
        "`host:port` globs (comma-separated), e.g. 127.0.0.1:5000,registry.internal:*. A "
        "registry that is, or resolves to, a loopback, link-local or private address, or does "
        "not resolve, is refused unless listed here (no requests to the host's own services "
        "through image references). Public registries need no entry.",
    )
    default_network: str = Field("none", description="Network of a run that names none.")
    allowed_networks: StrList = Field(
        default_factory=lambda: ["none", "bridge"],
        description="Networks a run may name (comma-separated).",
    )
    allowed_host_paths: StrList = Field(
        default_factory=list,
        description="Host path prefixes that `host` volumes may bind (comma-separated). "
        "Empty: `host` volumes are refused.",
    )
    allowed_volumes: StrList = Field(
        default_factory=list,
        description="Named volumes a run may mount besides those its tenant created through "
        "the API: glob patterns (comma-separated), e.g. shared-cache-*. Empty: none. Never "
        "one another tenant created, nor one the runner made for itself.",
    )
    allowed_volume_drivers: StrList = Field(
        default_factory=lambda: ["local"],
        description="Drivers POST /volume may name (comma-separated; on Kubernetes: storage "
        "classes). A request naming none gets the engine's default.",
    )
    allowed_volume_options: dict[str, list[str]] = Field(
        default_factory=dict,
        description="driver_opts POST /volume may set, JSON: each option to the exact values "
        'allowed, e.g. {"type": ["tmpfs"], "device": ["tmpfs"], "o": ["size=64m"]}. '
        "Empty: no options.",
    )

    max_output_bytes: int = Field(
        1 * MiB, ge=1024, description="Cap on captured stdout, and separately on stderr."
    )
    max_request_bytes: int = Field(
        256 * MiB, ge=1024, description="Cap on one request body (content travels as base64)."
    )
    max_archive_bytes: int = Field(
        64 * MiB,
        ge=1024,
        description="Cap on one decoded content field (file or tar.gz), and on stdin.",
    )
    max_extracted_bytes: int = Field(
        512 * MiB, ge=1024, description="Cap on what one request's archives unpack to."
    )
    max_archive_members: int = Field(
        10_000,
        ge=1,
        description="Cap on the number of entries in one request's archives, and in the "
        "directories one run returns.",
    )
    max_response_bytes: int = Field(
        64 * MiB, ge=1024, description="Cap on the content a run returns from its volumes."
    )

    max_concurrent_runs: int = Field(8, ge=1, description="Runs executing at once.")
    max_queued_runs: int = Field(32, ge=0, description="Runs waiting for a slot; past: 429.")
    shutdown_grace_seconds: float = Field(
        30, ge=0, description="On SIGTERM, how long runs in flight may finish before being killed."
    )
    log_format: Literal["text", "json"] = Field(
        "text", description="text for people, json for log pipelines (one object per line)."
    )
    reap_interval_seconds: float = Field(
        60,
        gt=0,
        description="How often leftovers are removed: those of runners that stopped holding "
        "their lease, and anything past its deadline.",
    )
    lease_seconds: float = Field(
        30,
        ge=1,
        description="How long this runner's claim on its runs lasts unless renewed (it renews "
        "every third of it). A crashed runner's leftovers are removed by any runner on the "
        "engine within lease_seconds + reap_interval_seconds.",
    )
    result_ttl_seconds: float = Field(
        3600,
        ge=0,
        description="How long a finished async run (POST /runs) keeps its result (exit, output "
        "up to the caps, returned paths) before it is removed; its container goes when it ends.",
    )
    max_kept_runs: int = Field(
        50,
        ge=1,
        description="Async runs one tenant may keep: running, and finished within "
        "RUNNER_RESULT_TTL_SECONDS. At it, the oldest finished MCP run_container run whose "
        "result run_container or wait_run already answered with is removed to make room; "
        "when there is none, POST /runs is a 429 (run_container a tool error) until one is "
        "removed (DELETE /runs/{id}, cancel_run) or expires.",
    )
    max_volumes_per_tenant: int = Field(
        50,
        ge=1,
        description="Named volumes one tenant may have (POST /volume, create_volume). Past it "
        "creating another is a 409 until one is removed (DELETE /volume/{name}).",
    )
    max_volume_bytes: int = Field(
        1024 * MiB,
        ge=MIN_SCRATCH_BYTES,
        description="What one named volume may hold (bytes and a block per entry; bytes or a "
        "size such as 2g): a write through the volume's file endpoints past it is a 413, and a "
        "run that grows a volume past it is stopped (sampled, like scratch). A tenant's volumes "
        "hold at most this times RUNNER_MAX_VOLUMES_PER_TENANT.",
    )
    volume_ttl_seconds: int = Field(
        7 * 24 * 3600,
        ge=60,
        description="How long a named volume is kept from its creation, or from its last "
        "extension (ttl_seconds); past it the reaper removes it once no run uses it (Docker).",
    )
    max_volume_ttl_seconds: int = Field(
        30 * 24 * 3600,
        ge=60,
        description="The longest ttl_seconds a caller may ask for a volume.",
    )
    run_log_max_bytes: int = Field(
        64 * MiB,
        ge=1 * MiB,
        description="Engine log kept per async run and per warm pool container (local log "
        "driver); past it the oldest output is dropped.",
    )
    oauth_issuers: StrList = Field(
        default_factory=list,
        description="OpenID Connect / OAuth 2.1 issuers whose access tokens are accepted "
        "beside the API tokens, exactly as each writes `iss` (comma-separated; https, or http "
        "on loopback only). Empty: no sign-in with an identity provider.",
    )
    oauth_audience: StrList = Field(
        default_factory=list,
        description="This runner's resource identifier(s), e.g. https://runner.example.com: a "
        "token's `aud` must contain one. To a request, the runner names itself (`resource` of "
        "its protected-resource metadata) with the one on the same host and port whose path "
        "leads the request's (e.g. https://runner.example.com/mcp for /mcp), else the first. "
        "Never a client id (an ID token would pass). Required with oauth_issuers.",
    )
    oauth_tenant_claim: str = Field(
        "sub",
        min_length=1,
        description="The token claim that names the tenant (`sub`, or e.g. `org_id`; a dotted "
        "path reaches into objects). The same value from two issuers is two tenants.",
    )
    oauth_required_scopes: StrList = Field(
        default_factory=list,
        description="Scopes every access token must grant (comma-separated); advertised as "
        "`scopes_supported`. Missing ones are 403 insufficient_scope.",
    )
    oauth_read_scopes: StrList = Field(
        default_factory=list,
        description="Scopes an access token needs to read (REST GET; MCP read-only tools, "
        "listings, task status), comma-separated. API tokens need none.",
    )
    oauth_write_scopes: StrList = Field(
        default_factory=list,
        description="Scopes an access token needs for everything else (starting and "
        "cancelling runs, volumes, pulls), comma-separated.",
    )
    oauth_leeway_seconds: float = Field(
        30, ge=0, le=300, description="Clock skew allowed on a token's exp, nbf and iat."
    )
    oauth_jwks_cache_seconds: float = Field(
        300,
        ge=1,
        le=86400,
        description="How long an issuer's signing keys are used before they are fetched again; "
        "when they cannot be, tokens of that issuer are refused with 503.",
    )
    oauth_jwks_refresh_seconds: float = Field(
        30,
        ge=0,
        le=3600,
        description="Least time between two fetches of the keys caused by a token naming an "
        "unknown key (a rotation): tokens of made-up key ids cannot flood the provider.",
    )
    oauth_introspection_url: str | None = Field(
        None,
        description="RFC 7662 introspection endpoint, for opaque (non-JWT) access tokens. "
        "Unset: only JWT access tokens are accepted.",
    )
    oauth_introspection_client_id: str | None = Field(
        None, description="Client id the runner introspects with (HTTP Basic)."
    )
    oauth_introspection_client_secret: SecretStr | None = Field(
        None, description="That client's secret."
    )
    oauth_timeout_seconds: float = Field(
        5, gt=0, le=60, description="Timeout of one request to the identity provider."
    )
    docker_api_timeout_seconds: float = Field(
        120, gt=0, description="Timeout of one Docker API call (not of a run)."
    )
    kube_namespace: str = Field("default", description="Namespace the run Jobs are made in.")
    kubeconfig: Path | None = Field(
        None,
        validation_alias=AliasChoices("RUNNER_KUBECONFIG", "KUBECONFIG"),
        description="kubeconfig file (KUBECONFIG) outside a cluster. Default: ~/.kube/config.",
    )
    kube_context: str | None = Field(None, description="kubeconfig context (outside a cluster).")
    kube_service_account: str | None = Field(
        None, description="Service account of run pods (its token is never mounted)."
    )
    kube_owner: str | None = Field(
        None,
        description="A ConfigMap in the run namespace that owns (ownerReferences) every Job, "
        "run record and lease the runner makes there: deleting it, as `helm uninstall` does, "
        "has the cluster delete them too. Default: none; they go when they end or expire.",
    )
    kube_job_ttl_seconds: int = Field(
        600, ge=0, description="ttlSecondsAfterFinished of run Jobs: a safety net for cleanup."
    )
    kube_node_selector: dict[str, str] = Field(
        default_factory=dict, description='nodeSelector of run pods, JSON: {"pool": "runs"}.'
    )
    kube_tolerations: list[dict[str, str | int]] = Field(
        default_factory=list, description="Tolerations of run pods, JSON list."
    )
    kube_helper_image: str = Field(
        "",
        description="The runner's own image, as the cluster pulls it: it unpacks content and "
        "returns response paths in run pods. Needed with RUNNER_BACKEND=kubernetes; no "
        "registry publishes it, so build it from the Dockerfile and push it where the cluster "
        "pulls from (the Helm chart sets it to the chart's image).",
    )
    kube_start_timeout_seconds: float = Field(
        120,
        gt=0,
        description="How long a run pod may take to be scheduled and pull its images before "
        "the run's clock starts; past it the run is a 503 saying why it is still pending.",
    )
    kube_image_pull_secrets: StrList = Field(
        default_factory=list,
        description="Pull Secrets (names, in the run namespace) of every run pod: for the "
        "helper image and private run images (comma-separated).",
    )
    kube_scratch_size: str = Field(
        "1Gi",
        description="The most disk one run pod may write on Kubernetes (a Kubernetes quantity): "
        "a run's `scratch` (RUNNER_DEFAULT_SCRATCH_BYTES when it asks for none) becomes its "
        "containers' ephemeral-storage limit and its content emptyDir's sizeLimit, but never "
        "more than this.",
    )
    kube_return_limit_bytes: int = Field(
        7 * MiB,
        ge=64 * 1024,
        le=256 * MiB,
        description="Most content a run returns on Kubernetes (and at most "
        "RUNNER_MAX_RESPONSE_BYTES): it travels as base64 in the collect sidecar's log, which "
        "must hold it, a third larger, in one file of the kubelet's containerLogMaxSize (10 MiB "
        "by default); raise it only with containerLogMaxSize.",
    )
    kube_run_as_user: int = Field(
        65534, ge=1, description="uid of run pods when a request names no user (never root)."
    )
    kube_allow_root: bool = Field(
        False, description="Let a request run as uid 0 on Kubernetes (user: 0)."
    )

    @field_validator(
        "allowed_networks",
        "allowed_host_paths",
        "allowed_images",
        "allowed_registries",
        "allowed_runtimes",
        "allowed_volumes",
        "allowed_volume_drivers",
        "cap_add",
        "warm_pool",
        "kube_image_pull_secrets",
        "api_tokens",
        "operator_tokens",
        "allowed_hosts",
        "allowed_origins",
        "oauth_issuers",
        "oauth_audience",
        "oauth_required_scopes",
        "oauth_read_scopes",
        "oauth_write_scopes",
        mode="before",
    )
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator(
        "default_scratch_bytes", "max_scratch_bytes", "max_volume_bytes", mode="before"
    )
    @classmethod
    def _size_in_bytes(cls, value: object) -> object:
        return parse_size(value) if isinstance(value, str) else value

    @field_validator("warm_pool")
    @classmethod
    def _warm_entries(cls, value: list[str]) -> list[str]:
        for item in value:
            parse_warm_entry(item)
        return value

    @field_validator("allowed_hosts")
    @classmethod
    def _host_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                host_entry(entry)
            except ValueError:
                raise ValueError(
                    "each entry is `name`, `name:port` or `name:*`, e.g. runner.example.com"
                ) from None
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origin_entries(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                parse_origin(entry, entry=True)
            except ValueError:
                raise ValueError(
                    "each entry is an origin, `scheme://name[:port]` (the port may be `*`), "
                    "e.g. https://tools.example.com"
                ) from None
        return value

    @field_validator("default_memory", "max_memory")
    @classmethod
    def _valid_size(cls, value: str) -> str:
        if parse_size(value) < MIN_MEMORY_BYTES:
            raise ValueError(f"{value!r} is below the engine's minimum of 6m; 0 is not unlimited")
        return value

    @model_validator(mode="after")
    def _defaults_within_maxima(self) -> Settings:
        if self.default_timeout_seconds > self.max_timeout_seconds:
            raise ValueError("default_timeout_seconds exceeds max_timeout_seconds")
        if parse_size(self.default_memory) > parse_size(self.max_memory):
            raise ValueError("default_memory exceeds max_memory")
        if self.default_cpus > self.max_cpus:
            raise ValueError("default_cpus exceeds max_cpus")
        if self.default_scratch_bytes > self.max_scratch_bytes:
            raise ValueError("default_scratch_bytes exceeds max_scratch_bytes")
        if self.volume_ttl_seconds > self.max_volume_ttl_seconds:
            raise ValueError("volume_ttl_seconds exceeds max_volume_ttl_seconds")
        if self.backend == "kubernetes" and not self.kube_helper_image:
            raise ValueError(
                "with backend kubernetes, set kube_helper_image to the runner's image, as the "
                "cluster pulls it (docs/kubernetes.md)"
            )
        allowed = {self.runtime, *self.allowed_runtimes}
        for entry in self.warm_entries():
            if entry.runtime not in allowed:
                raise ValueError(
                    f"warm_pool: runtime {entry.runtime!r} of {entry.image!r} is not "
                    "RUNNER_RUNTIME nor in RUNNER_ALLOWED_RUNTIMES: no run could take it"
                )
        if self.oauth_issuers and not self.oauth_audience:
            raise ValueError("oauth_issuers needs oauth_audience: the identifier tokens name")
        return self

    def warm_entries(self) -> list[WarmEntry]:
        """The warm pool's entries; an entry without a runtime uses RUNNER_RUNTIME."""
        entries = [parse_warm_entry(item) for item in self.warm_pool]
        return [WarmEntry(e.image, e.size, e.runtime or self.runtime) for e in entries]

    @field_validator("oauth_issuers", "oauth_introspection_url")
    @classmethod
    def _provider_urls(cls, value: list[str] | str | None) -> list[str] | str | None:
        for url in [value] if isinstance(value, str) else value or []:
            check_provider_url(url)
        return value

    def oauth_policy(self) -> OAuthPolicy | None:
        """What the identity provider sign-in trusts; None when no issuer is configured."""
        if not self.oauth_issuers:
            return None
        secret = self.oauth_introspection_client_secret
        return OAuthPolicy(
            issuers=tuple(self.oauth_issuers),
            audiences=tuple(self.oauth_audience),
            tenant_claim=self.oauth_tenant_claim,
            required_scopes=tuple(self.oauth_required_scopes),
            read_scopes=tuple(self.oauth_read_scopes),
            write_scopes=tuple(self.oauth_write_scopes),
            leeway=self.oauth_leeway_seconds,
            jwks_lifespan=self.oauth_jwks_cache_seconds,
            jwks_cooldown=self.oauth_jwks_refresh_seconds,
            introspection_url=self.oauth_introspection_url,
            introspection_client_id=self.oauth_introspection_client_id,
            introspection_client_secret=secret.get_secret_value() if secret else None,
            timeout=self.oauth_timeout_seconds,
        )

    def authenticates(self) -> bool:
        """Whether callers must present a token: an API token, or an identity provider's."""
        return bool(self.tokens()) or bool(self.oauth_issuers)

    def tokens(self) -> list[tuple[str, Tenant]]:
        """Every accepted API token and its tenant (operators' first): from the settings and
        from the tokens file."""
        operators = _entries(self.operator_tokens, self.operator_tokens_file)
        tenants = _entries(self.api_tokens, self.api_tokens_file)
        return [parse_token(entry, operator=True) for entry in operators] + [
            parse_token(entry) for entry in tenants
        ]

    def docker_environment(self) -> dict[str, str]:
        """The DOCKER_* variables docker-py understands, from these settings (env or .env)."""
        values = {
            "DOCKER_HOST": self.docker_host,
            "DOCKER_TLS_VERIFY": self.docker_tls_verify,
            "DOCKER_CERT_PATH": self.docker_cert_path,
        }
        return {name: value for name, value in values.items() if value}


def _entries(listed: list[str], file: Path | None) -> list[str]:
    """Token entries from a setting and, one per line, from a file."""
    lines = file.read_text().splitlines() if file is not None else []
    return [*listed, *(line.strip() for line in lines if line.strip())]


@dataclass(frozen=True)
class WarmEntry:
    """One image of the warm pool: `size` containers of `image` on `runtime` (None: default)."""

    image: str
    size: int
    runtime: str | None = None


MAX_WARM_PER_IMAGE = 64


def parse_warm_entry(text: str) -> WarmEntry:
    """`image=N[@runtime]`; the image may hold a digest (`name@sha256:...=2`)."""
    image, _, rest = text.rpartition("=")
    count, _, runtime = rest.partition("@")
    if not image or not count.isdigit() or not 1 <= int(count) <= MAX_WARM_PER_IMAGE:
        raise ValueError(
            f"{text!r} is not `image=N[@runtime]` with N from 1 to {MAX_WARM_PER_IMAGE}, e.g. "
            "busybox:1.36=2"
        )
    return WarmEntry(image, int(count), runtime or None)


@lru_cache
def get_settings() -> Settings:
    """The process's settings, read once. A bad value stops the process here, with exit status
    2 and one line per bad variable on stderr (`serve`, `mcp`, `uvicorn api_app:app` alike),
    rather than a traceback; a `RUNNER_*` variable no setting reads is a warning line, once."""
    try:
        settings = Settings()
    except (ValidationError, SettingsError) as exc:
        problems = setting_problems(Settings, exc)
        sys.stderr.write("".join(f"bad setting: {line}\n" for line in problems))
        raise SystemExit(2) from None
    env_file = Path(str(Settings.model_config.get("env_file")))
    found: dict[str, Iterable[str]] = {
        "in the environment": os.environ,
        f"in {env_file}": dotenv_values(env_file) if env_file.is_file() else {},
    }
    for line in unknown_variables(Settings, found):
        sys.stderr.write(f"warning: {line}\n")
    return settings
