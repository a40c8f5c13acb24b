#!/usr/bin/env python3
"""Renders the Kubernetes manifests in deploy/k8s/ from deploy/deployment.toml and the store
files in deploy/stores/, and prints operator runbooks that need exact object names.

    python3 deploy/generate.py                 # (re)write deploy/k8s/ and deploy/secrets-example/
    python3 deploy/generate.py --check         # exit 1 when the committed files are stale (CI)
    python3 deploy/generate.py move-store STORE TO_SHARD
                                               # the ordered steps to move a store (printed)
    python3 deploy/generate.py rebuild-job --shard S --service SVC --store ID
                                               # a Job that runs `syncctl state rebuild`

Standard library only (Python 3.11+: tomllib), so it runs wherever the repository is checked
out. The output is plain YAML, committed, so `kubectl apply -f` needs no templating tool.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEPLOY = Path(__file__).resolve().parent
OUT = DEPLOY / "k8s"
SECRETS_OUT = DEPLOY / "secrets-example"

ADMIN_PORT = 9090
INGEST_PORT = 8080
CONSOLE_PORT = 8088
# distroless `nonroot`: the image's USER (deploy/Dockerfile).
UID = 65532
STORES_PATH = "/etc/duellsync/stores"
STATE_ROOT = "/var/lib/duellsync"
PART_OF = "duellsync"

# The stateful services of a shard, in start order (sources before sinks; not required, the
# bus decouples them, but it reads well in `kubectl get`).
SHARD_SERVICES = ["change-poller", "catalog-publisher", "order-importer", "status-writeback"]

# Durable consumers per service: `<service>-<store>-<suffix>` on `stream`. The names are made
# in the services (services/*/src/lib.rs, catalog-publisher's worker::subjects); CI's
# deploy/check_manifests.py compares this table with the Rust sources.
CONSUMERS: dict[str, list[tuple[str, str]]] = {
    "change-poller": [("CMD", "cmd"), ("DUELL", "notice"), ("SYNC", "imported")],
    "catalog-publisher": [("DUELL", "duell"), ("SYNC", "sync"), ("WOO", "woo")],
    "order-importer": [("WOO", "orders"), ("CMD", "retry"), ("DUELL", "duell"), ("SYNC", "applied")],
    "status-writeback": [("SYNC", "imported"), ("DUELL", "status")],
}

# Which sinks may sleep (KEDA 0..1 on consumer lag) in a shard with `sleep_when_idle`:
# - order-importer and status-writeback do all their work inside a delivery (a message being
#   retried stays un-acked, so it counts as lag), so "no lag" really means "nothing to do".
# - catalog-publisher acks facts before it writes them (dirty marks in sled, retried on a
#   timer while WooCommerce is down, full syncs running after the ack): no lag does NOT mean
#   idle, and putting it to sleep would strand writes until the next event. It stays up.
# - change-poller is a source: it polls DUELL and WooCommerce on timers. It stays up.
SLEEPERS = ["order-importer", "status-writeback"]

# Grace the services need at SIGTERM (see each service's lib.rs), rounded up with margin for
# the trace flush (5 s). terminationGracePeriodSeconds must be at least this.
SHUTDOWN_GRACE = {
    "console": 30,            # requests in flight (an SSE stream ends with the connection)
    "webhook-ingest": 45,     # drain_delay 5 s + shutdown_grace 30 s + flush
    "change-poller": 30,      # workers stop within 20 s
    "catalog-publisher": 30,  # current batch finishes within 20 s
    "order-importer": 60,     # duell_timeout 30 s + 10 s: a DUELL call is never cut off
    "status-writeback": 45,   # consumers stop within 30 s
}

COMPONENT = {
    "console": "ui",
    "webhook-ingest": "source",
    "change-poller": "source",
    "catalog-publisher": "sink",
    "order-importer": "sink",
    "status-writeback": "sink",
}

SECRET_KEYS = [
    ("woo", "consumer_key"),
    ("woo", "consumer_secret"),
    ("woo", "webhook_secret"),
    ("woo", "previous_webhook_secret"),
    ("duell", "client_token"),
    ("duell", "stock_department"),
    ("duell", "order_department"),
    ("duell", "notice_secret"),
]

# Which store secrets each program reads (`Needs` in crates/settings/src/store.rs and each
# service's `secrets_needed`; deploy/check_manifests.py compares these with the Rust sources). A
# workload gets exactly these keys of a store's Secret, one `secretKeyRef` each: the
# internet-facing ingest never holds an API credential.
RECEIVER_SECRETS = ["woo.webhook_secret", "woo.previous_webhook_secret", "duell.notice_secret"]
API_SECRETS = [
    "woo.consumer_key",
    "woo.consumer_secret",
    "duell.client_token",
    "duell.stock_department",
    "duell.order_department",
]
SERVICE_SECRETS = {
    "webhook-ingest": RECEIVER_SECRETS,
    "change-poller": RECEIVER_SECRETS + API_SECRETS,
    "catalog-publisher": RECEIVER_SECRETS + API_SECRETS,
    "order-importer": RECEIVER_SECRETS + API_SECRETS,
    "status-writeback": RECEIVER_SECRETS + API_SECRETS,
    "syncctl": RECEIVER_SECRETS + API_SECRETS,
    "console": RECEIVER_SECRETS + API_SECRETS,
}

# NATS: the permission table (one source for the cluster and the tests), where each pod finds
# its NKey seed and the CA of the server's certificate.
PERMISSIONS = DEPLOY / "nats" / "permissions.toml"
NATS_ACCOUNTS_OUT = DEPLOY / "nats" / "accounts.yaml"
NATS_CREDENTIALS_DIR = "/etc/duellsync/nats/credentials"
NATS_CA_DIR = "/etc/duellsync/nats/ca"

# ---------------------------------------------------------------------------------------------
# A small YAML writer that keeps comments (PyYAML cannot), so the committed manifests explain
# themselves. Mappings keep insertion order.


class C:
    """A value with a comment written above its key (or list item)."""

    def __init__(self, value: Any, comment: str):
        self.value = value
        self.comment = comment


_PLAIN = re.compile(r"^[A-Za-z_/$][A-Za-z0-9_./$@-]*$")
_SPECIAL = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}


def _scalar(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN.match(s) and s.lower() not in _SPECIAL:
        return s
    if '"' in s and "'" not in s and "\n" not in s and "\\" not in s:
        return f"'{s}'"
    return json.dumps(s, ensure_ascii=False)


def _comment_lines(text: str, pad: str) -> list[str]:
    return [f"{pad}# {line}".rstrip() for line in text.strip("\n").split("\n")]


def _emit(v: Any, indent: int, out: list[str]) -> None:
    """Appends the lines of a mapping or list body at `indent` spaces."""
    pad = " " * indent
    if isinstance(v, dict):
        for k, val in v.items():
            if isinstance(val, C):
                out.extend(_comment_lines(val.comment, pad))
                val = val.value
            _emit_entry(f"{pad}{_scalar(k)}:", val, indent, out)
    elif isinstance(v, list):
        for item in v:
            if isinstance(item, C):
                out.extend(_comment_lines(item.comment, pad))
                item = item.value
            if isinstance(item, dict) and item:
                sub: list[str] = []
                _emit(item, indent + 2, sub)
                first = sub[0]
                # Comments of the first key go above the dash.
                while first.lstrip().startswith("#"):
                    out.append(pad + first.lstrip())
                    sub.pop(0)
                    first = sub[0]
                out.append(f"{pad}- {first[indent + 2:]}")
                out.extend(sub[1:])
            else:
                _emit_entry(f"{pad}-", item, indent, out)
    else:
        raise TypeError(f"not a collection: {v!r}")


def _emit_entry(head: str, val: Any, indent: int, out: list[str]) -> None:
    if isinstance(val, dict):
        if not val:
            out.append(f"{head} {{}}")
        else:
            out.append(head)
            _emit(val, indent + 2, out)
    elif isinstance(val, list):
        if not val:
            out.append(f"{head} []")
        elif head.endswith("-"):
            out.append(head)
            _emit(val, indent + 2, out)
        else:
            out.append(head)
            _emit(val, indent, out)
    elif isinstance(val, str) and "\n" in val:
        chomp = "" if val.endswith("\n") else "-"
        out.append(f"{head} |{chomp}")
        for line in val.rstrip("\n").split("\n"):
            out.append(f"{' ' * (indent + 2)}{line}".rstrip() if line else "")
    else:
        out.append(f"{head} {_scalar(val)}")


def to_yaml(docs: list[tuple[str | None, dict]], header: str) -> str:
    lines = _comment_lines(header, "")
    for comment, doc in docs:
        lines.append("---")
        if comment:
            lines.extend(_comment_lines(comment, ""))
        _emit(doc, 0, lines)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Inputs


@dataclass
class Store:
    id: str
    path: Path
    text: str
    settings: dict
    # settings key (e.g. "woo.consumer_key") -> env name, for every `{ env = ... }` secret
    env_secrets: dict[str, str] = field(default_factory=dict)


@dataclass
class Shard:
    name: str
    stores: list[str]
    sleep_when_idle: bool
    idle_after_seconds: int
    state_volume: str
    cpu_request: str
    cpu_limit: str
    memory_request: str
    memory_limit: str


@dataclass
class Inputs:
    image: str
    namespace: str
    shared: dict
    ingest: dict
    console: dict
    shards: list[Shard]
    stores: dict[str, Store]
    # NATS user name -> public NKey (deployment.toml [nats_users])
    nats_keys: dict[str, str] = field(default_factory=dict)
    permissions: dict = field(default_factory=dict)
    network: dict = field(default_factory=dict)


class InputError(Exception):
    pass


def env_name_for(store_id: str, section: str, key: str) -> str:
    """The env name convention for a store's secret (what new store files should use)."""
    sid = re.sub(r"[^A-Z0-9]", "_", store_id.upper())
    return f"STORE_{sid}_{section.upper()}_{key.upper()}"


def load_inputs(deploy: Path = DEPLOY) -> Inputs:
    raw = tomllib.loads((deploy / "deployment.toml").read_text())
    stores: dict[str, Store] = {}
    for path in sorted((deploy / "stores").glob("*.toml")):
        text = path.read_text()
        settings = tomllib.loads(text)
        sid = settings.get("id", path.stem)
        if sid != path.stem:
            raise InputError(f"{path}: id `{sid}` differs from the file name")
        if not re.fullmatch(r"[a-z0-9_-]{1,32}", sid):
            raise InputError(f"{path}: `{sid}` is not a valid store id (1-32 of a-z 0-9 - _)")
        st = Store(sid, path, text, settings)
        for section, key in SECRET_KEYS:
            v = settings.get(section, {}).get(key)
            if isinstance(v, dict) and "env" in v:
                st.env_secrets[f"{section}.{key}"] = v["env"]
            elif isinstance(v, str):
                raise InputError(f"{path}: {section}.{key} is written in the file; use {{ env = \"...\" }}")
        stores[sid] = st
    shards = []
    for s in raw.get("shards", []):
        shards.append(
            Shard(
                name=s["name"],
                stores=list(s["stores"]),
                sleep_when_idle=bool(s.get("sleep_when_idle", False)),
                idle_after_seconds=int(s.get("idle_after_seconds", 900)),
                state_volume=s.get("state_volume", "2Gi"),
                cpu_request=s.get("cpu_request", "50m"),
                cpu_limit=s.get("cpu_limit", "1"),
                memory_request=s.get("memory_request", "64Mi"),
                memory_limit=s.get("memory_limit", "256Mi"),
            )
        )
    inputs = Inputs(
        image=raw["image"],
        namespace=raw["namespace"],
        shared=raw["shared"],
        ingest=raw["ingest"],
        console=raw["console"],
        shards=shards,
        stores=stores,
        nats_keys=dict(raw.get("nats_users", {})),
        network=dict(raw.get("network", {})),
        permissions=load_permissions(deploy / "nats" / "permissions.toml"),
    )
    check_inputs(inputs)
    return inputs


def check_inputs(inp: Inputs) -> None:
    problems = []
    seen: dict[str, str] = {}
    for sh in inp.shards:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", sh.name) or len(sh.name) > 30:
            problems.append(f"shard `{sh.name}`: use lowercase letters, digits and '-' (at most 30)")
        if not sh.stores:
            problems.append(f"shard `{sh.name}` lists no store")
        for st in sh.stores:
            if st not in inp.stores:
                problems.append(f"shard `{sh.name}` lists `{st}`, which has no deploy/stores/{st}.toml")
            if st in seen:
                problems.append(
                    f"store `{st}` is in shards `{seen[st]}` and `{sh.name}`: a store must have exactly "
                    "one writer per service (its ledgers live in that process's sled)"
                )
            seen[st] = sh.name
    for sid in inp.stores:
        if sid not in seen:
            problems.append(f"store `{sid}` (deploy/stores/{sid}.toml) is in no shard: nothing would sync it")
    for sid, st in inp.stores.items():
        for key, env in st.env_secrets.items():
            if env.startswith("DUELLSYNC_"):
                problems.append(
                    f"{st.path.name}: {key} reads `{env}`; names starting with DUELLSYNC_ are read as "
                    "service settings and rejected as unknown keys - use e.g. "
                    f"{env_name_for(sid, *key.split('.'))}"
                )
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
                problems.append(f"{st.path.name}: {key} reads `{env}`, which is not an environment variable name")
    wanted = [u.name for u in nats_users(inp)]
    for name in wanted:
        key = inp.nats_keys.get(name)
        if key is None:
            problems.append(
                f"deployment.toml [nats_users] lacks `{name}`: make a key pair with `nk -gen user -pubout`, "
                f"put the public key (U...) here and the seed (SU...) into Secret nats-{name}"
            )
        elif not is_user_nkey(key):
            problems.append(f"deployment.toml [nats_users] `{name}`: `{key}` is not a user public NKey (U..., 56 characters)")
    for name in sorted(set(inp.nats_keys) - set(wanted)):
        problems.append(f"deployment.toml [nats_users] `{name}` is no user of deploy/nats/permissions.toml for these shards: remove it")
    keys = list(inp.nats_keys.values())
    for k in sorted({k for k in keys if keys.count(k) > 1}):
        problems.append(f"deployment.toml [nats_users]: `{k}` is given to several users; each needs its own key")
    if not inp.shared.get("nats_url", "").startswith("tls://"):
        problems.append("deployment.toml shared.nats_url must be tls://... (the services refuse plain connections to another host)")
    if problems:
        raise InputError("\n".join(problems))


# ---------------------------------------------------------------------------------------------
# NATS: accounts, users and their permissions


@dataclass
class NatsUser:
    name: str
    service: str


def load_permissions(path: Path = PERMISSIONS) -> dict:
    table = tomllib.loads(path.read_text())
    problems = []
    accounts = table.get("accounts", {})
    groups = table.get("groups", {})
    for name, u in table.get("users", {}).items():
        where = f"{path.name} [users.{name}]"
        unknown = set(u) - {"account", "scope", "include", "publish", "subscribe", "consumers", "reads", "kv_read", "kv_write"}
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        if u.get("account") not in accounts:
            problems.append(f"{where}: account `{u.get('account')}` is not in [accounts]")
        if u.get("scope") not in ("all", "shard"):
            problems.append(f"{where}: scope must be \"all\" or \"shard\"")
        for g in u.get("include", []):
            if g not in groups:
                problems.append(f"{where}: includes `{g}`, which is not in [groups]")
        for c in u.get("consumers", []):
            if set(c) != {"stream", "name", "filters"} or not c.get("filters"):
                problems.append(f"{where}: a consumer is {{ stream, name, filters = [...] }}")
        if any(g not in groups for g in u.get("include", [])):
            continue
        reads = _merged(table, name, "kv_read")
        for bucket in reads:
            if not re.fullmatch(r"[A-Za-z0-9_-]+", bucket):
                problems.append(f"{where}: kv_read `{bucket}` is not a bucket name")
        for key in _merged(table, name, "kv_write"):
            if key.split(".", 1)[0] not in reads:
                problems.append(f"{where}: kv_write `{key}` needs its bucket in kv_read")
    if problems:
        raise InputError("\n".join(problems))
    return table


def _merged(table: dict, service: str, key: str) -> list[str]:
    """A list key of a user with those of the groups it includes, groups first."""
    spec = table["users"][service]
    out = [e for g in spec.get("include", []) for e in table["groups"][g].get(key, [])]
    return out + [e for e in spec.get(key, []) if e not in out]


def permission_entries(table: dict, service: str) -> list[str]:
    """Every publish template of a user, consumers and reads spelled out (not yet expanded)."""
    spec = table["users"][service]
    out = [e for g in spec.get("include", []) for e in table["groups"][g].get("publish", [])]
    out += spec.get("publish", [])
    for c in spec.get("consumers", []):
        stream, name, filters = c["stream"], c["name"], c["filters"]
        # The API subject names the filter only when there is exactly one.
        if len(filters) == 1:
            out.append(f"$JS.API.CONSUMER.CREATE.{stream}.{name}.{filters[0]}")
        else:
            out.append(f"$JS.API.CONSUMER.CREATE.{stream}.{name}")
        out += [
            f"$JS.API.CONSUMER.INFO.{stream}.{name}",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{name}",
            f"$JS.ACK.{stream}.{name}.>",
        ]
    for stream in spec.get("reads", []):
        # Ordered consumers: created without a name (the server then refuses a durable one),
        # pulled by the name the server gave them; never acknowledged.
        out += [
            f"$JS.API.CONSUMER.CREATE.{stream}",
            f"$JS.API.CONSUMER.INFO.{stream}.*",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.*",
        ]
    for bucket in _merged(table, service, "kv_read"):
        # A bucket is the stream KV_<bucket>: look it up or create it (Bus::ensure_kv), get a
        # key (direct get), and list, watch or read the history of keys (ordered push
        # consumers delivered to the user's inbox, with flow control answered on $JS.FC).
        s = f"KV_{bucket}"
        out += [
            # (creating a bucket asks for the account's limits first)
            "$JS.API.INFO",
            f"$JS.API.STREAM.INFO.{s}",
            f"$JS.API.STREAM.CREATE.{s}",
            f"$JS.API.DIRECT.GET.{s}.>",
            f"$JS.API.STREAM.MSG.GET.{s}",
            f"$JS.API.CONSUMER.CREATE.{s}",
            f"$JS.API.CONSUMER.CREATE.{s}.>",
            f"$JS.API.CONSUMER.DELETE.{s}.*",
            f"$JS.FC.{s}.>",
        ]
    for key in _merged(table, service, "kv_write"):
        # Put, create, compare-and-set and delete markers are publishes on $KV.<bucket>.<key>.
        out.append(f"$KV.{key}")
    return out


def _expand(entries: list[str], service: str) -> list[str]:
    """Fills in {service}; {store} becomes `*`, and so does a token that names a store inside
    it (a consumer name such as `change-poller-{store}-cmd`: NATS wildcards match whole tokens
    only). Stores are live data (the registry, changed from the console without a deploy), so
    the server cannot know which stores a user serves: permissions bound what a service may
    do, for any store; which stores it serves is the registry's `shard` and the leases."""
    out: list[str] = []
    for e in entries:
        e = e.replace("{service}", service)
        x = ".".join("*" if "{store}" in t else t for t in e.split("."))
        if x not in out:
            out.append(x)
    return out


def user_permissions(table: dict, service: str) -> dict:
    """The server-side permissions of one user: `{"publish": {"allow": [...]}, "subscribe": ...}`."""
    spec = table["users"][service]
    subscribe = [e for g in spec.get("include", []) for e in table["groups"][g].get("subscribe", [])]
    subscribe += spec.get("subscribe", [])
    publish = _expand(permission_entries(table, service), service)
    subscribe = _expand(subscribe, service)
    # An absent list would allow everything: a user with nothing to receive is denied all.
    return {
        "publish": {"allow": publish} if publish else {"deny": [">"]},
        "subscribe": {"allow": subscribe} if subscribe else {"deny": [">"]},
    }


def nats_users(inp: Inputs) -> list[NatsUser]:
    """The NATS users of the deployment: one per `scope = "all"` service, one per service and
    shard for `scope = "shard"` (same permissions, own credentials: a shard's key is revoked
    alone, and the server's connection list names the shard)."""
    out = []
    for service, spec in inp.permissions.get("users", {}).items():
        if spec["scope"] == "all":
            out.append(NatsUser(service, service))
        else:
            for sh in inp.shards:
                out.append(NatsUser(f"{service}-{sh.name}", service))
    return out


def nats_user_of(inp: Inputs, service: str, shard: Shard | None) -> NatsUser:
    name = f"{service}-{shard.name}" if shard and inp.permissions["users"][service]["scope"] == "shard" else service
    return next(u for u in nats_users(inp) if u.name == name)


def accounts_config(table: dict, users: list[tuple[NatsUser, str]]) -> dict:
    """The `accounts` (and `system_account`) of the NATS server configuration for these users
    and their public keys. Anonymous connections are refused: every user has a key."""
    accounts: dict = {}
    system = None
    for name, spec in table["accounts"].items():
        acc: dict = {}
        if spec.get("jetstream"):
            acc["jetstream"] = "enabled"
        acc["users"] = []
        accounts[name] = acc
        if spec.get("system"):
            system = name
    for user, key in users:
        spec = table["users"][user.service]
        accounts[spec["account"]]["users"].append(
            {"nkey": key, "permissions": user_permissions(table, user.service)}
        )
    out: dict = {"accounts": accounts}
    if system:
        out["system_account"] = system
    return out


_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def is_user_nkey(key: str) -> bool:
    """A user's public NKey: base32 of prefix byte `U`, 32 key bytes and a CRC16 (little end)."""
    if len(key) != 56 or not key.startswith("U") or any(c not in _B32 for c in key):
        return False
    import base64

    raw = base64.b32decode(key + "=" * (-len(key) % 8))
    body, crc = raw[:-2], int.from_bytes(raw[-2:], "little")
    return body[0] == 20 << 3 and _crc16(body) == crc


def nats_accounts_values(inp: Inputs) -> list[tuple[str | None, dict]]:
    users = [(u, inp.nats_keys[u.name]) for u in nats_users(inp)]
    cfg = accounts_config(inp.permissions, users)
    # Name each user in a comment (the server knows users only by their public key).
    by_key = {key: u for u, key in users}
    for acc in cfg["accounts"].values():
        acc["users"] = [
            C(entry, by_key[entry["nkey"]].name)
            for entry in acc["users"]
        ]
    names = ", ".join(u.name for u, _ in users)
    return [
        (
            "Helm values for the official NATS chart, used together with deploy/nats/values.yaml:\n"
            "  helm upgrade --install nats nats/nats -n nats -f deploy/nats/values.yaml -f deploy/nats/accounts.yaml\n"
            "The accounts and users of the engine, rendered from deploy/nats/permissions.toml and the\n"
            "public keys of deploy/deployment.toml [nats_users] (public keys only; each seed lives in the\n"
            f"Secret of its pod). Users: {names}.\n"
            "No user = no connection: anonymous clients are refused.",
            {"config": {"merge": cfg}},
        )
    ]


# ---------------------------------------------------------------------------------------------
# Objects


def labels(service: str, shard: str | None = None) -> dict:
    out = {
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/instance": f"{service}-{shard}" if shard else service,
        "app.kubernetes.io/component": COMPONENT[service],
        "app.kubernetes.io/part-of": PART_OF,
    }
    if shard:
        out["duellsync.io/shard"] = shard
    return out


def selector(service: str, shard: str | None = None) -> dict:
    return {
        "app.kubernetes.io/name": service,
        "app.kubernetes.io/instance": f"{service}-{shard}" if shard else service,
    }


def meta(name: str, ns: str, lbl: dict, annotations: dict | None = None) -> dict:
    m: dict = {"name": name, "namespace": ns, "labels": lbl}
    if annotations:
        m["annotations"] = annotations
    return m


def config_hash(inp: Inputs, store_ids: list[str]) -> str:
    # Store settings are not hashed: the services follow the store registry live. The store
    # ids are (a store added to a workload brings its Secret, read at start).
    h = hashlib.sha256()
    h.update(json.dumps(shared_env(inp), sort_keys=True).encode())
    for sid in store_ids:
        h.update(sid.encode())
    return h.hexdigest()[:16]


def store_text(inp: Inputs, sid: str) -> str:
    """The store file as the registry gets it: with the shard that serves it."""
    st = inp.stores[sid]
    if "shard" in st.settings:
        return st.text
    return f'shard = "{shard_of(inp, sid).name}"\n' + st.text


def seal_env(service: str) -> list:
    """The sealing keys from Secret duellsync-seal: the receiver key for every service, the
    API key for all but webhook-ingest (least secrets in the internet-facing pod)."""
    out = [
        {
            "name": "DUELLSYNC_SEAL__RECEIVER_KEY",
            "valueFrom": {"secretKeyRef": {"name": "duellsync-seal", "key": "receiver"}},
        }
    ]
    if service != "webhook-ingest":
        out.append(
            {
                "name": "DUELLSYNC_SEAL__API_KEY",
                "valueFrom": {"secretKeyRef": {"name": "duellsync-seal", "key": "api"}},
            }
        )
    return out


def shared_env(inp: Inputs) -> dict:
    s = inp.shared
    return {
        "DUELLSYNC_NATS__URL": s["nats_url"],
        "DUELLSYNC_NATS__TLS_CA_FILE": f"{NATS_CA_DIR}/ca.crt",
        "DUELLSYNC_NATS__REPLICAS": str(s["nats_replicas"]),
        "DUELLSYNC_TELEMETRY__OTLP_ENDPOINT": s["otlp_endpoint"],
        "DUELLSYNC_TELEMETRY__LOG_FORMAT": s["log_format"],
        "DUELLSYNC_TELEMETRY__LOG_FILTER": s["log_filter"],
        "DUELLSYNC_ADMIN__LISTEN": f"0.0.0.0:{ADMIN_PORT}",
    }


def pod_security_context() -> dict:
    return C(
        {
            "runAsNonRoot": True,
            "runAsUser": UID,
            "runAsGroup": UID,
            # The state volume is writable by the service's group.
            "fsGroup": UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "Meets the `restricted` Pod Security Standard (the namespace enforces it).",
    )


def container_security_context() -> dict:
    return {
        "runAsNonRoot": True,
        "runAsUser": UID,
        "runAsGroup": UID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def probes(service: str) -> dict:
    http = lambda path: {"path": path, "port": "admin"}  # noqa: E731
    return {
        "startupProbe": C(
            {
                "httpGet": http("/healthz"),
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 60,
            },
            "The admin listener answers once App::build is done: NATS connected, streams and\n"
            "consumers declared, sled opened (and, for order-importer, crashed attempts settled).\n"
            "Up to 5 minutes (a NATS outage at start) before liveness takes over.",
        ),
        "livenessProbe": C(
            {
                "httpGet": http("/healthz"),
                "periodSeconds": 10,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            "Alive = the process serves HTTP. A service whose task died exits by itself.",
        ),
        "readinessProbe": C(
            {
                "httpGet": http("/readyz"),
                "periodSeconds": 5,
                "timeoutSeconds": 3,
                "failureThreshold": 2 if service == "webhook-ingest" else 3,
            },
            "Ready = NATS connected, streams present, not draining (503 from SIGTERM on).",
        ),
    }


def resources(cpu_req: str, cpu_lim: str, mem_req: str, mem_lim: str) -> C:
    return C(
        {
            "requests": {"cpu": cpu_req, "memory": mem_req},
            "limits": {"cpu": cpu_lim, "memory": mem_lim},
        },
        f"SPEC §8: each service stays under 64 MB RSS with 100k products of state. The request\n"
        f"({mem_req}) is that steady state, so the scheduler packs pods by what they really use; the\n"
        f"limit ({mem_lim}) is headroom for bursts (a full sync's 500-message pulls and 100-item\n"
        f"batches, 2 MiB webhook bodies in flight) before the OOM killer. A pod near its limit is a\n"
        f"bug to look at (docs/operations.md), not a reason to raise it. CPU is mostly waiting on\n"
        f"HTTP and NATS: a small request, a limit that only stops a runaway loop.",
    )


def common_env(service: str, shard: str | None) -> list:
    env: list = [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
    attrs = "k8s.namespace.name=$(POD_NAMESPACE),k8s.pod.name=$(POD_NAME)"
    if shard:
        attrs += f",duellsync.shard={shard}"
    env.append(
        C(
            {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": attrs},
            "Added to every span's resource (the SDK's env detector), so Jaeger shows pod and shard.",
        )
    )
    return env


def env_from() -> list:
    return [{"configMapRef": {"name": "duellsync-env"}}]


def secret_env(inp: Inputs, program: str, store_ids: list[str]) -> list:
    """One variable per store secret the program reads (SERVICE_SECRETS), each from its key of
    the store's Secret: a pod never holds a credential its program does not use."""
    wanted = SERVICE_SECRETS[program]
    out = []
    for sid in store_ids:
        for key, env in inp.stores[sid].env_secrets.items():
            if key in wanted:
                out.append({"name": env, "valueFrom": {"secretKeyRef": {"name": f"store-{sid}", "key": env}}})
    return out


def nats_volumes(user: NatsUser, ca_configmap: str) -> list:
    return [
        C(
            {
                "name": "nats-credentials",
                "secret": {
                    "secretName": f"nats-{user.name}",
                    "defaultMode": 0o440,
                    "items": [{"key": "nkey", "path": "nkey"}],
                },
            },
            f"The NKey seed of NATS user `{user.name}` (deploy/nats/permissions.toml [users.{user.service}]).",
        ),
        {
            "name": "nats-ca",
            "configMap": {"name": ca_configmap, "items": [{"key": "ca.crt", "path": "ca.crt"}]},
        },
    ]


def nats_mounts() -> list:
    return [
        {"name": "nats-credentials", "mountPath": NATS_CREDENTIALS_DIR, "readOnly": True},
        {"name": "nats-ca", "mountPath": NATS_CA_DIR, "readOnly": True},
    ]


def nkey_env() -> dict:
    return {"name": "DUELLSYNC_NATS__NKEY_FILE", "value": f"{NATS_CREDENTIALS_DIR}/nkey"}


def stores_volume(store_ids: list[str]) -> dict:
    return {
        "name": "stores",
        "projected": {
            "defaultMode": 0o444,
            "sources": [
                {"configMap": {"name": f"store-{sid}", "items": [{"key": f"{sid}.toml", "path": f"{sid}.toml"}]}}
                for sid in store_ids
            ],
        },
    }


def pod_annotations(inp: Inputs, store_ids: list[str]) -> dict:
    return {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(ADMIN_PORT),
        "prometheus.io/path": "/metrics",
        "duellsync.io/config-hash": config_hash(inp, store_ids),
    }


def pod_spec(service: str, containers: list, volumes: list, grace: int) -> dict:
    return {
        "serviceAccountName": "duellsync",
        "automountServiceAccountToken": False,
        "enableServiceLinks": C(
            False,
            "No <SERVICE>_PORT variables: a Service named duellsync-* would inject DUELLSYNC_* names\n"
            "that the config loader rejects as unknown settings.",
        ),
        "terminationGracePeriodSeconds": C(
            grace,
            f"{service} needs up to {SHUTDOWN_GRACE[service]} s after SIGTERM: readiness off, intake stopped,\n"
            "in-flight work finished and acked, state and traces flushed.",
        ),
        "securityContext": pod_security_context(),
        "containers": containers,
        "volumes": volumes,
    }


# The ingest's sizing from deployment.toml [ingest] (services/webhook-ingest/src/config.rs).
INGEST_SIZING = [
    "body_limit",
    "small_body",
    "max_in_flight",
    "max_large_in_flight",
    "max_connections",
    "header_read_timeout",
    "idle_timeout",
    "notice_rate",
    "notice_burst",
]
MI = 1024 * 1024


def ingest_memory_limit(ing: dict) -> str:
    """The pod limit from the ingest's memory bound (IngestSection::memory_bound: bodies held
    at once, three copies each, and what connections buffer) plus 64 MiB for the process,
    rounded up to 32 MiB."""
    small = min(ing["small_body"], ing["body_limit"])
    bodies = ing["max_large_in_flight"] * ing["body_limit"] + ing["max_in_flight"] * small
    bound = 3 * bodies + ing["max_connections"] * 32 * 1024
    total = 64 * MI + bound
    return f"{-(-total // (32 * MI)) * 32}Mi"


def container(inp: Inputs, service: str, shard: Shard | None, store_ids: list[str]) -> dict:
    env = common_env(service, shard.name if shard else None)
    env.append(nkey_env())
    env += secret_env(inp, service, store_ids)
    ports = []
    if service == "webhook-ingest":
        ports.append({"name": "http", "containerPort": INGEST_PORT, "protocol": "TCP"})
        ing = inp.ingest
        env += [
            {"name": "DUELLSYNC_INGEST__LISTEN", "value": f"0.0.0.0:{INGEST_PORT}"},
            C(
                {"name": "DUELLSYNC_INGEST__DRAIN_DELAY", "value": "5s"},
                "/readyz turns 503 at SIGTERM; the listener stays open this long so endpoints and\n"
                "the Ingress stop sending first.",
            ),
            {"name": "DUELLSYNC_INGEST__SHUTDOWN_GRACE", "value": "30s"},
        ]
        for key in INGEST_SIZING:
            env.append({"name": f"DUELLSYNC_INGEST__{key.upper()}", "value": str(ing[key])})
        res = resources(ing["cpu_request"], ing["cpu_limit"], ing["memory_request"], ingest_memory_limit(ing))
    elif service == "console":
        con = inp.console
        ports.append({"name": "http", "containerPort": CONSOLE_PORT, "protocol": "TCP"})
        env += [
            {"name": "DUELLSYNC_CONSOLE__LISTEN", "value": f"0.0.0.0:{CONSOLE_PORT}"},
            C(
                {"name": "DUELLSYNC_CONSOLE__TRUSTED_PROXY_HOPS", "value": "1"},
                "The Ingress controller is the one proxy (the NetworkPolicy admits no one else):\n"
                "logins are throttled per client address from its X-Forwarded-For entry.",
            ),
            C(
                {"name": "DUELLSYNC_CONSOLE__PUBLIC_URL", "value": f"https://{con['public_host']}"},
                "Invitation links point here.",
            ),
            C(
                {
                    "name": "DUELLSYNC_CONSOLE__OPERATOR_USER",
                    "valueFrom": {"secretKeyRef": {"name": "duellsync-console", "key": "operator_user"}},
                },
                "The operator's login, from Secret duellsync-console (`console hash-password`).",
            ),
            {
                "name": "DUELLSYNC_CONSOLE__OPERATOR_PASSWORD_HASH",
                "valueFrom": {"secretKeyRef": {"name": "duellsync-console", "key": "operator_password_hash"}},
            },
        ]
        res = resources(con["cpu_request"], con["cpu_limit"], con["memory_request"], con["memory_limit"])
    else:
        assert shard is not None
        env += [
            C(
                {"name": "DUELLSYNC_SHARD", "value": shard.name},
                "Serves the stores whose registry record names this shard (`shard`); moving a\n"
                "store is changing its record, applied live.",
            ),
            {"name": "DUELLSYNC_STATE_DIR", "value": f"{STATE_ROOT}/{service}"},
        ]
        res = resources(shard.cpu_request, shard.cpu_limit, shard.memory_request, shard.memory_limit)
    ports.append({"name": "admin", "containerPort": ADMIN_PORT, "protocol": "TCP"})
    env += seal_env(service)
    mounts = []
    if shard:
        mounts.append({"name": "state", "mountPath": STATE_ROOT})
    mounts.append({"name": "tmp", "mountPath": "/tmp"})
    mounts += nats_mounts()
    c = {
        "name": service,
        "image": inp.image,
        "imagePullPolicy": "IfNotPresent",
        "command": [f"/usr/local/bin/{service}"],
        "ports": ports,
        "envFrom": C(
            env_from(),
            "Shared settings. Store secrets come one by one below (secretKeyRef): only those this\n"
            "service reads (deploy/generate.py SERVICE_SECRETS, checked against the Rust sources).",
        ),
        "env": env,
        "resources": res,
        "securityContext": container_security_context(),
    }
    c.update(probes(service))
    c["volumeMounts"] = mounts
    return c


def tmp_volume() -> C:
    return C(
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
        "The root filesystem is read-only; nothing is meant to write /tmp, but a library that\n"
        "does must not fail.",
    )


def ingest_objects(inp: Inputs) -> list[tuple[str | None, dict]]:
    ns = inp.namespace
    svc = "webhook-ingest"
    all_ids = sorted(inp.stores)
    lbl = labels(svc)
    ing = inp.ingest
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(svc, ns, lbl),
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(svc)},
            "strategy": C(
                {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                "Never fewer ready pods than the HPA wants while rolling: a refused delivery is lost\n"
                "(WooCommerce never retries) until the poller's gap fill finds the order.",
            ),
            "template": {
                "metadata": {"labels": lbl, "annotations": pod_annotations(inp, all_ids)},
                "spec": {
                    **pod_spec(
                        svc,
                        [container(inp, svc, None, all_ids)],
                        [
                            tmp_volume(),
                            *nats_volumes(nats_user_of(inp, svc, None), inp.shared["nats_ca_configmap"]),
                        ],
                        SHUTDOWN_GRACE[svc],
                    ),
                    "topologySpreadConstraints": [
                        {
                            "maxSkew": 1,
                            "topologyKey": "kubernetes.io/hostname",
                            "whenUnsatisfiable": "ScheduleAnyway",
                            "labelSelector": {"matchLabels": selector(svc)},
                        }
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(svc, ns, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(svc),
            "ports": [
                {"name": "http", "port": INGEST_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
            ],
        },
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(svc, ns, lbl),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc},
            "minReplicas": C(ing["min_replicas"], "At least two, on different nodes where possible."),
            "maxReplicas": ing["max_replicas"],
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": ing["cpu_target_percent"]},
                    },
                }
            ],
            "behavior": {
                "scaleDown": {
                    "stabilizationWindowSeconds": 300,
                    "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}],
                }
            },
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(svc, ns, lbl),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector(svc)},
        },
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta(
            svc,
            ns,
            lbl,
            {
                "nginx.ingress.kubernetes.io/proxy-body-size": f"{max(2, -(-ing['body_limit'] * 2 // MI))}m",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "60",
                # nginx buffers each request body before it talks to a pod (its default), so a
                # slow sender holds an nginx buffer, not an ingest slot.
                "nginx.ingress.kubernetes.io/proxy-request-buffering": "on",
                # Concurrent connections per client address: WooCommerce sends a store's deliveries
                # one at a time.
                "nginx.ingress.kubernetes.io/limit-connections": str(ing.get("limit_connections_per_client", 20)),
            },
        ),
        "spec": {
            "ingressClassName": ing["ingress_class"],
            "tls": [{"hosts": [ing["public_host"]], "secretName": ing["tls_secret"]}],
            "rules": [
                {
                    "host": ing["public_host"],
                    "http": {
                        "paths": [
                            {
                                "path": p,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": svc, "port": {"name": "http"}}},
                            }
                            for p in ("/webhooks/woocommerce/", "/notices/duell/")
                        ]
                    },
                }
            ],
        },
    }
    return [
        (
            "Stateless and store-agnostic: every replica answers for every store. No `replicas`\n"
            "here: the HorizontalPodAutoscaler below owns the count (minReplicas 2), and a\n"
            "`replicas` in the manifest would reset it on every apply.",
            deployment,
        ),
        ("The public port (8080) and the admin port (9090, scraped by Prometheus).", service),
        ("Scales the ingest on CPU: signature checks and publishes are CPU and NATS round trips.", hpa),
        ("Drains take one pod at a time; the other keeps answering WooCommerce.", pdb),
        (
            "WooCommerce delivers only to ports 80, 443 and 8080: TLS on 443 here. Only the two\n"
            "public routes; the admin port stays inside the cluster. The proxy's body limit is\n"
            "above ingest.body_limit so the ingest, not the proxy, answers 413.",
            ingress,
        ),
    ]


def console_objects(inp: Inputs) -> list[tuple[str | None, dict]]:
    ns = inp.namespace
    svc = "console"
    all_ids = sorted(inp.stores)
    lbl = labels(svc)
    con = inp.console
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(svc, ns, lbl),
        "spec": {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": selector(svc)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": lbl, "annotations": pod_annotations(inp, all_ids)},
                "spec": pod_spec(
                    svc,
                    [container(inp, svc, None, all_ids)],
                    [tmp_volume(), *nats_volumes(nats_user_of(inp, svc, None), inp.shared["nats_ca_configmap"])],
                    SHUTDOWN_GRACE[svc],
                ),
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(svc, ns, lbl),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(svc),
            "ports": [
                {"name": "http", "port": CONSOLE_PORT, "targetPort": "http", "protocol": "TCP"},
                {"name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"},
            ],
        },
    }
    pdb = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": meta(svc, ns, lbl),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector(svc)}},
    }
    hpa = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta(svc, ns, lbl),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": svc},
            "minReplicas": C(con["min_replicas"], "Sessions, accounts and invitations live in NATS: any replica serves anyone."),
            "maxReplicas": con["max_replicas"],
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}},
                }
            ],
        },
    }
    ingress = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta(
            svc,
            ns,
            lbl,
            {
                # Server-Sent Events (progress, status) stay open: no buffering, long reads.
                "nginx.ingress.kubernetes.io/proxy-buffering": "off",
                "nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
            },
        ),
        "spec": {
            "ingressClassName": con["ingress_class"],
            "tls": [{"hosts": [con["public_host"]], "secretName": con["tls_secret"]}],
            "rules": [
                {
                    "host": con["public_host"],
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {"service": {"name": svc, "port": {"name": "http"}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
    return [
        (
            "The retailer's page and the operator's view. Both sealing keys (it seals what is typed\n"
            "and tests connections) and every store's Secret (stores with { env } secrets).",
            deployment,
        ),
        ("The pages (8088, behind the Ingress) and the admin port (9090).", service),
        ("Two replicas at least; more under load (argon2 logins and page renders are CPU).", hpa),
        ("Drains take one pod at a time.", pdb),
        ("HTTPS only (the session cookie is Secure); its own host, apart from the webhooks.", ingress),
    ]


def console_secret_example(inp: Inputs) -> list[tuple[str | None, dict]]:
    return [
        (
            "The console's operator. An EXAMPLE, never applied as it is:\n"
            f"  kubectl -n {inp.namespace} create secret generic duellsync-console \\\n"
            "    --from-literal=operator_user=operator \\\n"
            "    --from-literal=operator_password_hash=\"$(console hash-password)\"   # reads the password on stdin",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta("duellsync-console", inp.namespace, {"app.kubernetes.io/part-of": PART_OF}),
                "type": "Opaque",
                "stringData": {
                    "operator_user": C("operator", "the login name"),
                    "operator_password_hash": C("REPLACE_ME", "$argon2id$... from `console hash-password`"),
                },
            },
        )
    ]


def shard_objects(inp: Inputs, shard: Shard) -> list[tuple[str | None, dict]]:
    ns = inp.namespace
    docs: list[tuple[str | None, dict]] = []
    for svc in SHARD_SERVICES:
        name = f"{svc}-{shard.name}"
        lbl = labels(svc, shard.name)
        sleeps = shard.sleep_when_idle and svc in SLEEPERS
        spec: dict = {}
        if not sleeps:
            spec["replicas"] = C(
                1,
                "One writer per store: never more than 1 (its ledgers are in this pod's sled volume).",
            )
        spec.update(
            {
                "serviceName": name,
                "revisionHistoryLimit": 5,
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate"},
                "persistentVolumeClaimRetentionPolicy": C(
                    {"whenDeleted": "Retain", "whenScaled": "Retain"},
                    "The state survives scaling to 0 (KEDA) and deleting the StatefulSet.",
                ),
                "selector": {"matchLabels": selector(svc, shard.name)},
                "template": {
                    "metadata": {"labels": lbl, "annotations": pod_annotations(inp, shard.stores)},
                    "spec": pod_spec(
                        svc,
                        [container(inp, svc, shard, shard.stores)],
                        [
                            tmp_volume(),
                            *nats_volumes(nats_user_of(inp, svc, shard), inp.shared["nats_ca_configmap"]),
                        ],
                        max(SHUTDOWN_GRACE[svc], 30),
                    ),
                },
                "volumeClaimTemplates": [
                    C(
                        {
                            "metadata": {"name": "state", "labels": lbl},
                            "spec": {
                                "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": shard.state_volume}},
                            },
                        },
                        f"sled state ({STATE_ROOT}/{svc}). The cluster's default StorageClass; set\n"
                        "storageClassName for an SSD class where there is a choice.",
                    )
                ],
            }
        )
        sts_comment = f"{svc} for {', '.join(shard.stores)}."
        if sleeps:
            sts_comment += (
                "\nNo `replicas`: KEDA's ScaledObject (k8s/keda/) moves it between 0 and 1 on consumer lag."
            )
        docs.append(
            (
                sts_comment,
                {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": meta(name, ns, lbl), "spec": spec},
            )
        )
        docs.append(
            (
                "Headless: the StatefulSet's network identity and the admin/metrics port.",
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": meta(name, ns, lbl),
                    "spec": {
                        "clusterIP": "None",
                        "selector": selector(svc, shard.name),
                        "ports": [{"name": "admin", "port": ADMIN_PORT, "targetPort": "admin", "protocol": "TCP"}],
                    },
                },
            )
        )
        docs.append(
            (
                "A single writer cannot stay up through a drain, and must not block one (minAvailable: 1\n"
                "would stall every node drain). Events wait in JetStream while the pod moves; the\n"
                "eviction honours terminationGracePeriodSeconds, so in-flight work finishes.",
                {
                    "apiVersion": "policy/v1",
                    "kind": "PodDisruptionBudget",
                    "metadata": meta(name, ns, lbl),
                    "spec": {
                        "maxUnavailable": 1,
                        "unhealthyPodEvictionPolicy": "AlwaysAllow",
                        "selector": {"matchLabels": selector(svc, shard.name)},
                    },
                },
            )
        )
    return docs


def keda_objects(inp: Inputs, shard: Shard) -> list[tuple[str | None, dict]]:
    ns = inp.namespace
    docs = []
    for svc in SLEEPERS:
        name = f"{svc}-{shard.name}"
        triggers = []
        for sid in shard.stores:
            for stream, suffix in CONSUMERS[svc]:
                triggers.append(
                    {
                        "type": "nats-jetstream",
                        "metadata": {
                            "natsServerMonitoringEndpoint": inp.shared["nats_monitoring_endpoint"],
                            "account": inp.shared["nats_account"],
                            "stream": stream,
                            "consumer": f"{svc}-{sid}-{suffix}",
                            "lagThreshold": "100",
                            "activationLagThreshold": "0",
                        },
                    }
                )
        docs.append(
            (
                f"{svc} of {shard.name} sleeps when none of its consumers has work: lag = pending +\n"
                "un-acked (a message waiting for a retry is un-acked, so it keeps the pod up). A\n"
                "consumer that does not exist yet (first start, after `syncctl state rebuild`) reads\n"
                "as the whole stream, which wakes the pod to create it. maxReplicaCount 1: a store\n"
                "has one writer; more capacity = another shard.",
                {
                    "apiVersion": "keda.sh/v1alpha1",
                    "kind": "ScaledObject",
                    "metadata": meta(name, ns, labels(svc, shard.name)),
                    "spec": {
                        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": name},
                        "pollingInterval": 15,
                        "cooldownPeriod": shard.idle_after_seconds,
                        "minReplicaCount": 0,
                        "maxReplicaCount": 1,
                        "triggers": triggers,
                    },
                },
            )
        )
    return docs


def monitoring_objects(inp: Inputs) -> list[tuple[str | None, dict]]:
    ns = inp.namespace
    lbl = {"app.kubernetes.io/part-of": PART_OF}
    smon = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "ServiceMonitor",
        "metadata": meta("duellsync", ns, lbl),
        "spec": {
            "selector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}},
            "namespaceSelector": {"matchNames": [ns]},
            "endpoints": [
                {
                    "port": "admin",
                    "path": "/metrics",
                    "interval": "30s",
                    "relabelings": [
                        {"sourceLabels": ["__meta_kubernetes_pod_label_duellsync_io_shard"], "targetLabel": "shard"}
                    ],
                }
            ],
        },
    }
    consumers = "(change-poller|catalog-publisher|order-importer|status-writeback)-.+"
    rules = [
        (
            "DuellsyncConsumerLagHigh",
            f'max by (consumer_name) (nats_consumer_num_pending{{is_consumer_leader="true",consumer_name=~"{consumers}"}}) > 1000',
            "10m",
            "warning",
            "{{ $labels.consumer_name }} has {{ $value }} events waiting",
            "A sink falls behind (or is down). Check the pod of the consumer's service and shard, its "
            "outside calls (duellsync_*_duration_seconds) and WooCommerce/DUELL health. A store that is "
            "always behind needs its own shard.",
        ),
        (
            "DuellsyncConsumerStuck",
            f'max by (consumer_name) (nats_consumer_num_pending{{is_consumer_leader="true",consumer_name=~"{consumers}"}}) > 0 '
            f'and max by (consumer_name) (delta(nats_consumer_ack_floor_stream_seq{{is_consumer_leader="true",consumer_name=~"{consumers}"}}[15m])) == 0',
            "15m",
            "critical",
            "{{ $labels.consumer_name }} has work but acked nothing for 15 minutes",
            "Nothing serves the consumer (pod down, store missing from every DUELLSYNC_SHARD, KEDA not "
            "waking a sleeping shard) or every message fails and is being retried.",
        ),
        (
            "DuellsyncDeadLetters",
            'sum by (consumer) (increase(duellsync_bus_handled_total{outcome="dead_letter"}[15m])) > 0',
            "0m",
            "warning",
            "{{ $labels.consumer }} dead-lettered {{ $value }} messages",
            "Items failed for good (reason in the header). `syncctl dlq list`, fix the cause, then "
            "`syncctl dlq replay` or `skip`.",
        ),
        (
            "DuellsyncDlqGrowing",
            'max(delta(nats_stream_last_seq{stream_name="DLQ"}[1h])) > 20',
            "0m",
            "warning",
            "{{ $value }} new dead letters in the last hour",
            "Many items fail the same way: a store setting, an expired token, an outside API change.",
        ),
        (
            "DuellsyncOrderInDoubt",
            "sum by (store) (increase(duellsync_importer_orders_in_doubt_total[30m])) > 0",
            "0m",
            "critical",
            "an order of {{ $labels.store }} may or may not be in DUELL",
            "An import's outcome is unknown and cannot be looked up. Check DUELL for the Woo order id, "
            "then `syncctl dlq skip` (it is there) or `syncctl dlq replay` (it is not). "
            "docs/order-importer.md.",
        ),
        (
            "DuellsyncOrdersParked",
            "sum by (store, code) (increase(duellsync_importer_orders_parked_total[30m])) > 0",
            "0m",
            "warning",
            "orders of {{ $labels.store }} need attention ({{ $labels.code }})",
            "`syncctl log --store S --failed` names the order and the reason.",
        ),
        (
            "DuellsyncWooWritesFailing",
            "sum by (store) (increase(duellsync_publisher_write_failures_total[15m])) > 3",
            "10m",
            "critical",
            "catalogue writes to {{ $labels.store }}'s WooCommerce keep failing",
            "The shop is down, slow or refuses the keys. `syncctl test --store S`.",
        ),
        (
            "DuellsyncProductsFailing",
            "sum by (store, code) (increase(duellsync_publisher_products_failed_total[1h])) > 0",
            "0m",
            "warning",
            "products of {{ $labels.store }} were refused by WooCommerce ({{ $labels.code }})",
            "`syncctl log --store S --failed`; a SKU clash is fixed in DUELL or WooCommerce.",
        ),
        (
            "DuellsyncPollerFailing",
            "sum by (store, cycle) (increase(duellsync_poller_cycle_failures_total[15m])) > 3",
            "15m",
            "critical",
            "{{ $labels.store }}: the {{ $labels.cycle }} poll keeps failing",
            "Nothing new is observed for this store. Check DUELL/WooCommerce credentials with "
            "`syncctl test --store S`.",
        ),
        (
            "DuellsyncStatusConflicts",
            'sum by (store, outcome) (increase(duellsync_writeback_status_events_total{outcome=~"backwards|final_status_set_by_person|total_mismatch|failed"}[1h])) > 0',
            "0m",
            "info",
            "{{ $labels.store }}: status write-back refused ({{ $labels.outcome }})",
            "The engine did not move a Woo order (a person decided, or the total changed). See the sync log.",
        ),
        (
            "DuellsyncIngestRejecting",
            'sum by (store) (rate(duellsync_ingest_requests_total{status=~"401|503|500"}[5m])) > 0.05',
            "10m",
            "warning",
            "webhook-ingest refuses deliveries for {{ $labels.store }}",
            "401: WooCommerce signs with another secret (after a rotation run `syncctl webhooks ensure`). "
            "5xx: NATS is unreachable. WooCommerce disables a webhook after failures; the poller's gap "
            "fill still finds the orders.",
        ),
        (
            "DuellsyncDuellSlow",
            "histogram_quantile(0.99, sum by (le, store) (rate(duellsync_importer_duell_call_duration_seconds_bucket[10m]))) > 10",
            "15m",
            "warning",
            "DUELL answers {{ $labels.store }}'s order imports slowly (p99 {{ $value }}s)",
            "Slow answers end as timeouts, which become unknown outcomes. Check DUELL's status.",
        ),
    ]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": meta("duellsync", ns, lbl),
        "spec": {
            "groups": [
                {
                    "name": "duellsync",
                    "rules": [
                        {
                            "alert": alert,
                            "expr": expr,
                            "for": for_,
                            "labels": {"severity": sev},
                            "annotations": {"summary": summary, "description": desc},
                        }
                        for alert, expr, for_, sev, summary, desc in rules
                    ],
                }
            ]
        },
    }
    return [
        (
            "Scrapes every duellsync Service's admin port. Needs the Prometheus Operator; without it the\n"
            "pods' prometheus.io/* annotations serve annotation-based scrape configs.",
            smon,
        ),
        (
            "Alerts; docs/operations.md explains each. nats_* series come from the NATS chart's\n"
            "prometheus-nats-exporter (promExporter in deploy/nats/values.yaml, prefix `nats`).",
            rule,
        ),
    ]


def base_objects(inp: Inputs) -> dict[str, list[tuple[str | None, dict]]]:
    ns = inp.namespace
    files: dict[str, list] = {}
    files["00-namespace.yaml"] = [
        (
            "Pods here must meet the `restricted` Pod Security Standard.",
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {
                    "name": ns,
                    "labels": {
                        "app.kubernetes.io/part-of": PART_OF,
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                    },
                },
            },
        ),
        (
            "The services call no Kubernetes API: no token is mounted.",
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": meta("duellsync", ns, {"app.kubernetes.io/part-of": PART_OF}),
                "automountServiceAccountToken": False,
            },
        ),
        (
            "Settings every service shares (services/*/src/config.rs; env prefix DUELLSYNC_, `__` nests).",
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": meta("duellsync-env", ns, {"app.kubernetes.io/part-of": PART_OF}),
                "data": shared_env(inp),
            },
        ),
    ]
    store_docs = []
    for sid, st in sorted(inp.stores.items()):
        store_docs.append(
            (
                f"Store `{sid}` (from deploy/stores/{sid}.toml). Its secrets: Secret store-{sid}.",
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": meta(f"store-{sid}", ns, {"app.kubernetes.io/part-of": PART_OF, "duellsync.io/store": sid}),
                    "data": {f"{sid}.toml": store_text(inp, sid)},
                },
            )
        )
    store_docs.append(store_apply_job(inp))
    files["10-stores.yaml"] = store_docs
    files["05-network.yaml"] = network_objects(inp)
    files["20-webhook-ingest.yaml"] = ingest_objects(inp)
    files["25-console.yaml"] = console_objects(inp)
    for i, sh in enumerate(inp.shards):
        files[f"{30 + i:02d}-{sh.name}.yaml"] = shard_objects(inp, sh)
    return files


def store_apply_job(inp: Inputs) -> tuple[str | None, dict]:
    """The GitOps path into the store registry: `syncctl store apply` of every store ConfigMap,
    as syncctl (its NATS user, the sealing keys). Named by a hash of the store files, so each
    change is a new Job (a Job's template cannot be changed) and applying the same files again
    is a no-op. It reads no store secret: `{ env }` references go into the registry as they are."""
    h = hashlib.sha256()
    for sid in sorted(inp.stores):
        h.update(store_text(inp, sid).encode())
    job = syncctl_job(
        inp,
        f"store-apply-{h.hexdigest()[:10]}",
        ["store", "apply", "-f", STORES_PATH, "--as", "gitops (deploy/stores)"],
        [],
    )
    # The store files themselves, not only the ones whose secrets it would read.
    job["spec"]["template"]["spec"]["volumes"][0] = stores_volume(sorted(inp.stores))
    job["metadata"]["labels"]["app.kubernetes.io/name"] = "store-apply"
    job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "store-apply"
    # NATS may still be starting when the manifests are applied together: try again.
    job["spec"]["backoffLimit"] = 10
    job["spec"]["ttlSecondsAfterFinished"] = 604800
    job["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    return (
        "Applies deploy/stores/ to the store registry (the one source of truth the services\n"
        "watch); prints the diff in its log. Settings changed in the console meanwhile are\n"
        "overwritten by the files for the keys the files set.",
        job,
    )


def seal_secret_example(inp: Inputs) -> list[tuple[str | None, dict]]:
    return [
        (
            "The sealing keys of the store registry. An EXAMPLE, never applied as it is. Create it\n"
            "once with two fresh keys (32 random bytes, base64 each):\n"
            f"  kubectl -n {inp.namespace} create secret generic duellsync-seal \\\n"
            "    --from-literal=api=\"$(syncctl store keygen)\" --from-literal=receiver=\"$(syncctl store keygen)\"\n"
            "`api` opens WooCommerce keys and DUELL tokens sealed in the registry, `receiver` the\n"
            "webhook and notice secrets; webhook-ingest gets only `receiver`. Losing a key loses the\n"
            "secrets sealed with it (enter them again); keep both in your secret manager.",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta("duellsync-seal", inp.namespace, {"app.kubernetes.io/part-of": PART_OF}),
                "type": "Opaque",
                "stringData": {"api": C("REPLACE_ME", "syncctl store keygen"), "receiver": C("REPLACE_ME", "syncctl store keygen")},
            },
        )
    ]


def secret_example(inp: Inputs, st: Store) -> list[tuple[str | None, dict]]:
    data = {}
    for key, env in st.env_secrets.items():
        data[env] = C("REPLACE_ME", f"{key}")
    return [
        (
            f"Secret of store `{st.id}`: keys are the env names deploy/stores/{st.id}.toml reads.\n"
            "An EXAMPLE, never applied as it is and never committed with real values. Create the real\n"
            "one from your secret store, e.g.\n"
            f"  kubectl -n {inp.namespace} create secret generic store-{st.id} --from-env-file={st.id}.env\n"
            "DUELL tokens are longer than 30 characters; the webhook secret uses only letters,\n"
            "digits, '-' and '_'.",
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta(f"store-{st.id}", inp.namespace, {"app.kubernetes.io/part-of": PART_OF, "duellsync.io/store": st.id}),
                "type": "Opaque",
                "stringData": data,
            },
        )
    ]


# The nats-box users (deploy/nats/permissions.toml) and the Secrets in the NATS namespace
# that deploy/nats/values.yaml natsBox.contexts read their seeds from.
NATS_BOX_SECRETS = {"nats-box": "nats-box-nkey", "nats-box-system": "nats-box-system-nkey"}
# Labels of the official chart's pods.
NATS_SERVER_PODS = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats"}
NATS_BOX_PODS = {"app.kubernetes.io/name": "nats", "app.kubernetes.io/component": "nats-box"}
# The console tests connections and lists DUELL's departments for the retailer.
API_CALLERS = SHARD_SERVICES + ["syncctl", "console"]


def _ns(name: str) -> dict:
    return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": name}}}


def _ports(*ports: int, protocol: str = "TCP") -> list:
    return [{"port": p, "protocol": protocol} for p in ports]


def network_objects(inp: Inputs) -> list[tuple[str | None, dict]]:
    """Default deny in the namespace, then exactly what each pod needs."""
    ns = inp.namespace
    net = inp.network
    lbl = {"app.kubernetes.io/part-of": PART_OF}
    engine = {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}

    def policy(name: str, comment: str, spec: dict) -> tuple[str, dict]:
        return (
            comment,
            {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": meta(name, ns, lbl), "spec": spec},
        )

    return [
        policy(
            "default-deny",
            "Nothing in or out of any pod of the namespace unless a policy below allows it.",
            {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
        ),
        policy(
            "dns",
            "Name lookups (cluster DNS).",
            {
                "podSelector": {},
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{**_ns("kube-system"), "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}}}],
                        "ports": _ports(53, protocol="UDP") + _ports(53),
                    }
                ],
            },
        ),
        policy(
            "nats",
            "Every engine pod talks to NATS (client port, TLS), and to nothing else in its namespace.",
            {
                "podSelector": engine,
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{**_ns(inp.shared["nats_namespace"]), "podSelector": {"matchLabels": NATS_SERVER_PODS}}],
                        "ports": _ports(4222),
                    }
                ],
            },
        ),
        policy(
            "traces",
            "Spans to Jaeger's OTLP receiver.",
            {
                "podSelector": engine,
                "policyTypes": ["Egress"],
                "egress": [{"to": [_ns(net["otlp_namespace"])], "ports": _ports(net["otlp_port"])}],
            },
        ),
        policy(
            "outside-apis",
            "WooCommerce shops and DUELL, for the services that call them (and syncctl's Jobs).\n"
            "Not webhook-ingest: the internet-facing pod cannot reach out. Private ranges are\n"
            "excluded, so a compromised pod cannot reach cluster services through this rule.",
            {
                "podSelector": {
                    "matchExpressions": [
                        {"key": "app.kubernetes.io/name", "operator": "In", "values": API_CALLERS},
                        {"key": "app.kubernetes.io/part-of", "operator": "In", "values": [PART_OF]},
                    ]
                },
                "policyTypes": ["Egress"],
                "egress": [
                    {
                        "to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": list(net["outside_except"])}}],
                        "ports": _ports(*net["outside_ports"]),
                    }
                ],
            },
        ),
        policy(
            "webhook-ingest-public",
            "The public port only from the ingress controller.",
            {
                "podSelector": {"matchLabels": selector("webhook-ingest")},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_ns(net["ingress_namespace"])], "ports": _ports(INGEST_PORT)}],
            },
        ),
        policy(
            "console-public",
            "The console's pages only from the ingress controller.",
            {
                "podSelector": {"matchLabels": selector("console")},
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_ns(net["ingress_namespace"])], "ports": _ports(CONSOLE_PORT)}],
            },
        ),
        policy(
            "metrics",
            "Prometheus scrapes the admin port. (Kubelet probes come from the node, which\n"
            "NetworkPolicies do not filter on common CNIs.)",
            {
                "podSelector": engine,
                "policyTypes": ["Ingress"],
                "ingress": [{"from": [_ns(net["monitoring_namespace"])], "ports": _ports(ADMIN_PORT)}],
            },
        ),
    ]


def nats_namespace_objects(inp: Inputs) -> dict[str, list[tuple[str | None, dict]]]:
    """What the NATS namespace needs besides the chart: the namespace, TLS (cert-manager) and a
    NetworkPolicy that lets only the engine, nats-box, KEDA and Prometheus in."""
    nns = inp.shared["nats_namespace"]
    net = inp.network
    lbl = {"app.kubernetes.io/part-of": PART_OF}
    release = "nats"
    hosts = [
        release,
        f"{release}.{nns}",
        f"{release}.{nns}.svc",
        f"{release}.{nns}.svc.cluster.local",
        f"*.{release}-headless",
        f"*.{release}-headless.{nns}",
        f"*.{release}-headless.{nns}.svc",
        f"*.{release}-headless.{nns}.svc.cluster.local",
    ]
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": nns, "labels": {"app.kubernetes.io/part-of": PART_OF}},
    }
    issuer_self = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": meta("nats-selfsigned", nns, lbl),
        "spec": {"selfSigned": {}},
    }
    ca = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta("nats-ca", nns, lbl),
        "spec": {
            "isCA": True,
            "commonName": "duellsync NATS CA",
            "secretName": "nats-ca",
            "duration": "87600h",
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": {"name": "nats-selfsigned", "kind": "Issuer"},
        },
    }
    issuer_ca = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Issuer",
        "metadata": meta("nats-ca", nns, lbl),
        "spec": {"ca": {"secretName": "nats-ca"}},
    }
    server = {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": meta("nats-server-tls", nns, lbl),
        "spec": {
            "secretName": "nats-server-tls",
            "duration": "2160h",
            "renewBefore": "720h",
            "dnsNames": hosts,
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
            "issuerRef": {"name": "nats-ca", "kind": "Issuer"},
        },
    }
    policy = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": meta("nats-server", nns, lbl),
        "spec": {
            "podSelector": {"matchLabels": NATS_SERVER_PODS},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [
                        {**_ns(inp.namespace), "podSelector": {"matchLabels": {"app.kubernetes.io/part-of": PART_OF}}},
                        {"podSelector": {"matchLabels": NATS_BOX_PODS}},
                    ],
                    "ports": _ports(4222),
                },
                {"from": [{"podSelector": {"matchLabels": NATS_SERVER_PODS}}], "ports": _ports(6222)},
                {
                    "from": [
                        _ns(net["keda_namespace"]),
                        _ns(net["monitoring_namespace"]),
                        {"podSelector": {"matchLabels": NATS_BOX_PODS}},
                    ],
                    "ports": _ports(8222),
                },
                {"from": [_ns(net["monitoring_namespace"])], "ports": _ports(7777)},
            ],
        },
    }
    return {
        "00-namespace.yaml": [("The NATS namespace (the chart installs into it).", namespace)],
        "10-tls.yaml": [
            ("cert-manager: a self-signed issuer only to make the CA below.", issuer_self),
            ("The CA of the NATS certificates. Its public part goes to the engine's namespace as\n"
             "ConfigMap nats-ca (docs/operations.md, Security model).", ca),
            ("Issues the server certificate from the CA.", issuer_ca),
            ("The servers' certificate for clients and routes (deploy/nats/values.yaml\n"
             "config.nats.tls and config.cluster.tls). cert-manager renews it; the chart's reloader\n"
             "makes the servers pick it up.", server),
        ],
        "20-network-policy.yaml": [
            (
                "NATS servers take clients only from the engine's pods and nats-box, routes only from\n"
                "each other, monitoring only from KEDA, Prometheus and nats-box.",
                policy,
            )
        ],
    }


def nats_secret_examples(inp: Inputs) -> dict[str, list[tuple[str | None, dict]]]:
    out = {}
    for u in nats_users(inp):
        if u.name in NATS_BOX_SECRETS:
            name, ns, key = NATS_BOX_SECRETS[u.name], inp.shared["nats_namespace"], "nats.nk"
        else:
            name, ns, key = f"nats-{u.name}", inp.namespace, "nkey"
        out[f"{name}.yaml"] = [
            (
                f"NKey seed of NATS user `{u.name}` (public key in deploy/deployment.toml [nats_users]).\n"
                "An EXAMPLE, never applied as it is. Make a key pair with `nk -gen user -pubout` and\n"
                f"  kubectl -n {ns} create secret generic {name} --from-file={key}=<seed file>",
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": meta(name, ns, {"app.kubernetes.io/part-of": PART_OF}),
                    "type": "Opaque",
                    "stringData": {key: C("REPLACE_ME", "the seed, SU...")},
                },
            )
        ]
    return out


HEADER = "Generated by deploy/generate.py from deploy/deployment.toml and deploy/stores/. Do not edit;\nedit the inputs and run `python3 deploy/generate.py`."


def render(inp: Inputs) -> dict[Path, str]:
    out: dict[Path, str] = {}
    for name, docs in base_objects(inp).items():
        out[OUT / "base" / name] = to_yaml(docs, HEADER)
    for sh in inp.shards:
        if sh.sleep_when_idle:
            out[OUT / "keda" / f"{sh.name}.yaml"] = to_yaml(keda_objects(inp, sh), HEADER)
    out[OUT / "monitoring" / "prometheus.yaml"] = to_yaml(monitoring_objects(inp), HEADER)
    for sid, st in sorted(inp.stores.items()):
        out[SECRETS_OUT / f"store-{sid}.yaml"] = to_yaml(secret_example(inp, st), HEADER)
    out[SECRETS_OUT / "duellsync-seal.yaml"] = to_yaml(seal_secret_example(inp), HEADER)
    out[SECRETS_OUT / "duellsync-console.yaml"] = to_yaml(console_secret_example(inp), HEADER)
    for name, docs in nats_secret_examples(inp).items():
        out[SECRETS_OUT / name] = to_yaml(docs, HEADER)
    for name, docs in nats_namespace_objects(inp).items():
        out[OUT / "nats" / name] = to_yaml(docs, HEADER)
    out[NATS_ACCOUNTS_OUT] = to_yaml(nats_accounts_values(inp), HEADER.replace("deploy/stores/", "deploy/nats/permissions.toml"))
    return out


def managed_files() -> set[Path]:
    found = set()
    for d in (OUT, SECRETS_OUT):
        if d.exists():
            found |= {p for p in d.rglob("*.yaml")}
    if NATS_ACCOUNTS_OUT.exists():
        found.add(NATS_ACCOUNTS_OUT)
    return found


# ---------------------------------------------------------------------------------------------
# Runbooks


def shard_of(inp: Inputs, store: str) -> Shard:
    for sh in inp.shards:
        if store in sh.stores:
            return sh
    raise InputError(f"store `{store}` is in no shard")


def rebuild_job(inp: Inputs, shard: str, service: str, store: str) -> str:
    if service not in SHARD_SERVICES:
        raise InputError(f"--service must be one of {', '.join(SHARD_SERVICES)}")
    sh = next((s for s in inp.shards if s.name == shard), None)
    if sh is None:
        raise InputError(f"no shard `{shard}` in deploy/deployment.toml")
    name = f"{service}-{shard}"
    job = syncctl_job(
        inp,
        f"rebuild-{service}-{store}",
        ["state", "rebuild", "--service", service, "--store", store, "--state-dir", f"{STATE_ROOT}/{service}",
         # A Job has no terminal to confirm on.
         "--yes"],
        sorted(set(sh.stores) | {store}),
        [
            C(
                {"name": "state", "persistentVolumeClaim": {"claimName": f"state-{name}-0"}},
                f"The volume of {name}-0, which must be scaled to 0 first (sled locks its files).",
            )
        ],
        [{"name": "state", "mountPath": STATE_ROOT}],
    )
    return to_yaml(
        [(f"Rebuild {service}'s state of store `{store}` in {shard}. Apply, wait, delete.", job)],
        "Printed by `deploy/generate.py rebuild-job`; not committed.",
    )


def syncctl_job(
    inp: Inputs,
    name: str,
    args: list[str],
    store_ids: list[str],
    extra_volumes: list | None = None,
    extra_mounts: list | None = None,
) -> dict:
    """A Job running `syncctl ARGS` with syncctl's own NATS credentials and the secrets of the
    stores it loads. syncctl is the operator's tool, and its credentials may delete and change
    what the services may not: it runs as a short Job, never inside a service's pod."""
    user = nats_user_of(inp, "syncctl", None)
    # The sealing keys: `store apply` seals secrets typed into a file, `test` opens them.
    env = [nkey_env(), *seal_env("syncctl"), *secret_env(inp, "syncctl", store_ids)]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": meta(name, inp.namespace, {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/name": "syncctl"}),
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 86400,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/part-of": PART_OF, "app.kubernetes.io/name": "syncctl"}},
                "spec": {
                    "restartPolicy": "Never",
                    "serviceAccountName": "duellsync",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": pod_security_context(),
                    "containers": [
                        {
                            "name": "syncctl",
                            "image": inp.image,
                            "command": ["/usr/local/bin/syncctl", *args],
                            "envFrom": env_from(),
                            "env": env,
                            "resources": {
                                "requests": {"cpu": "50m", "memory": "64Mi"},
                                "limits": {"cpu": "1", "memory": "256Mi"},
                            },
                            "securityContext": container_security_context(),
                            "volumeMounts": [
                                {"name": "stores", "mountPath": STORES_PATH, "readOnly": True},
                                *nats_mounts(),
                                *(extra_mounts or []),
                            ],
                        }
                    ],
                    "volumes": [
                        stores_volume(store_ids),
                        *nats_volumes(user, inp.shared["nats_ca_configmap"]),
                        *(extra_volumes or []),
                    ],
                },
            },
        },
    }


def syncctl_run(inp: Inputs, name: str, args: list[str]) -> str:
    job = syncctl_job(inp, name, args, sorted(inp.stores))
    return to_yaml(
        [(f"syncctl {' '.join(args)}. Apply, wait, read its log, delete (deploy/syncctl does all four).", job)],
        "Printed by `deploy/generate.py syncctl-job`; not committed.",
    )


def move_store(inp: Inputs, store: str, to: str) -> str:
    src = shard_of(inp, store)
    dst = next((s for s in inp.shards if s.name == to), None)
    if dst is None:
        raise InputError(f"no shard `{to}` in deploy/deployment.toml")
    if dst is src:
        raise InputError(f"`{store}` is already in {to}")
    ns = inp.namespace
    k = f"kubectl -n {ns}"
    lines = [
        f"# Move store `{store}` from {src.name} to {dst.name} (docs/operations.md, 'Moving a store').",
        "# From step 1 to step 3 no shard serves the store: its events wait in JetStream (webhooks",
        "# are still taken by webhook-ingest, which serves every store).",
        "",
        "# 0. Fence orders older than the streams (30 days): a rebuilt importer ledger only knows",
        "#    the imports still in the SYNC stream. In deploy/stores/" + store + ".toml set",
        "#    orders_from_date to a date at most 29 days ago (unless it is later already), then",
        "#    regenerate and apply deploy/k8s/base/10-stores.yaml (the store-apply Job).",
        "",
        f"# 1. Park it: {src.name} lets go of it at once (the registry is watched live).",
        f"deploy/syncctl store move {store} parked",
        "",
        f"# 2. In {dst.name}, for each stateful service: stop it, rebuild the store's state",
        "#    (deletes the store's rows and durable consumers, so they replay from the streams),",
        "#    start it again. KEDA-managed sinks: pause KEDA first so it does not wake them.",
    ]
    if dst.sleep_when_idle:
        for svc in SLEEPERS:
            lines.append(
                f"{k} annotate scaledobject/{svc}-{dst.name} autoscaling.keda.sh/paused-replicas=0 --overwrite"
            )
    for svc in SHARD_SERVICES:
        job = f"rebuild-{svc}-{store}"
        lines += [
            f"{k} scale statefulset/{svc}-{dst.name} --replicas=0",
            f"{k} wait --for=delete pod/{svc}-{dst.name}-0 --timeout=2m",
            f"python3 deploy/generate.py rebuild-job --shard {dst.name} --service {svc} --store {store} | {k} apply -f -",
            f"{k} wait --for=condition=complete job/{job} --timeout=30m && {k} logs job/{job}",
            f"{k} delete job/{job}",
        ]
    lines += [
        "",
        f"# 3. Serve it in {dst.name}: in deploy/deployment.toml move `{store}` from {src.name}'s",
        f"#    stores to {dst.name}'s, regenerate, apply: the store-apply Job names {dst.name} as its",
        f"#    shard, {dst.name}'s pods get the store's Secret.",
        "python3 deploy/generate.py",
        f"{k} apply -f deploy/k8s/base/10-stores.yaml",
        f"{k} apply -f deploy/k8s/base/*-{dst.name}.yaml",
        f"{k} apply -f deploy/k8s/base/*-{src.name}.yaml",
    ]
    for keda in (src, dst):
        if keda.sleep_when_idle:
            lines.append(f"{k} apply -f deploy/k8s/keda/{keda.name}.yaml")
    if dst.sleep_when_idle:
        for svc in SLEEPERS:
            lines.append(f"{k} annotate scaledobject/{svc}-{dst.name} autoscaling.keda.sh/paused-replicas-")
    for svc in SHARD_SERVICES:
        if not (dst.sleep_when_idle and svc in SLEEPERS):
            lines.append(f"{k} scale statefulset/{svc}-{dst.name} --replicas=1")
        lines.append(f"{k} rollout status statefulset/{svc}-{dst.name} --timeout=10m")
    lines += [
        "",
        "# 4. Check: the store's consumers catch up and nothing is left behind.",
        f"deploy/syncctl status --store {store}",
        f"deploy/syncctl log --store {store} --failed",
        "# Commit deploy/ (inputs and regenerated manifests).",
    ]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="fail when the committed output is stale")
    sub = ap.add_subparsers(dest="cmd")
    mv = sub.add_parser("move-store", help="print the steps to move a store to another shard")
    mv.add_argument("store")
    mv.add_argument("to_shard")
    na = sub.add_parser(
        "nats-accounts",
        help="print the NATS accounts for the given users as JSON (the tests' server configuration)",
    )
    na.add_argument("--user", action="append", default=[], metavar="SERVICE=PUBLIC_NKEY")
    sj = sub.add_parser("syncctl-job", help="print a Job that runs syncctl with the given arguments")
    sj.add_argument("--name", default="syncctl")
    sj.add_argument("args", nargs=argparse.REMAINDER, help="syncctl's arguments (after --)")
    rj = sub.add_parser("rebuild-job", help="print a Job that runs `syncctl state rebuild`")
    rj.add_argument("--shard", required=True)
    rj.add_argument("--service", required=True)
    rj.add_argument("--store", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "nats-accounts":
        # Needs only the permission table, so the tests do not depend on deployment.toml.
        try:
            table = load_permissions()
            users = []
            for spec in args.user:
                service, _, key = spec.partition("=")
                if service not in table["users"] or not is_user_nkey(key):
                    raise InputError(f"--user {spec}: want SERVICE=PUBLIC_NKEY, SERVICE one of {', '.join(table['users'])}")
                users.append((NatsUser(service, service), key))
        except (InputError, tomllib.TOMLDecodeError) as e:
            print(f"deploy/generate.py: {e}", file=sys.stderr)
            return 1
        print(json.dumps(accounts_config(table, users), indent=1))
        return 0
    try:
        inp = load_inputs()
        if args.cmd == "move-store":
            sys.stdout.write(move_store(inp, args.store, args.to_shard))
            return 0
        if args.cmd == "syncctl-job":
            rest = args.args[1:] if args.args[:1] == ["--"] else args.args
            if not rest:
                raise InputError("give syncctl's arguments after --, e.g. syncctl-job -- status --store acme")
            if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,50}[a-z0-9])?", args.name):
                raise InputError(f"--name `{args.name}` is not a valid Job name")
            sys.stdout.write(syncctl_run(inp, args.name, rest))
            return 0
        if args.cmd == "rebuild-job":
            sys.stdout.write(rebuild_job(inp, args.shard, args.service, args.store))
            return 0
        rendered = render(inp)
    except (InputError, KeyError, tomllib.TOMLDecodeError) as e:
        print(f"deploy/generate.py: {e}", file=sys.stderr)
        return 1
    stale = []
    for path, text in rendered.items():
        if not path.exists() or path.read_text() != text:
            stale.append(path)
    extra = managed_files() - set(rendered)
    if args.check:
        for p in stale:
            print(f"stale: {p.relative_to(DEPLOY.parent)}", file=sys.stderr)
        for p in sorted(extra):
            print(f"not generated (remove it): {p.relative_to(DEPLOY.parent)}", file=sys.stderr)
        if stale or extra:
            print("run `python3 deploy/generate.py` and commit the result", file=sys.stderr)
            return 1
        return 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rendered[path])
        print(f"wrote {path.relative_to(DEPLOY.parent)}")
    for p in sorted(extra):
        p.unlink()
        print(f"removed {p.relative_to(DEPLOY.parent)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
