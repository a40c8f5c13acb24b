#!/usr/bin/env python3
"""Validates deploy/: run by scripts/validate-deploy (which provides the pinned tools).

1. The committed manifests are what deploy/generate.py makes of its inputs.
2. Every object validates against the Kubernetes JSON schemas of a pinned version
   (kubernetes-validate, offline, strict: unknown fields fail); the CRDs we use (KEDA
   ScaledObject, ServiceMonitor, PrometheusRule) against deploy/schemas/*.json.
3. Policy on every workload: probes, requests and limits, non-root and the rest of the
   restricted security context, grace period, no service links, no token.
4. Our own contracts, read from the Rust sources so they cannot drift silently:
   - every DUELLSYNC_* variable a container gets is a setting of that service's Config;
   - every store file parses and uses only keys the store settings know (deny_unknown_fields);
   - every env name a store file reads is a key of the store's Secret, and every workload
     that serves the store (its `shard`, or webhook-ingest) gets that Secret;
   - each store names its shard, served by exactly one instance of each stateful service
     (DUELLSYNC_SHARD); the store-apply Job applies every store file to the registry; the
     sealing keys reach each service as its role needs (webhook-ingest: receiver key only);
   - the KEDA triggers name consumers the services really create;
   - the Dockerfile ships every service binary.
5. hadolint on deploy/Dockerfile; deploy/nats/values.yaml has JetStream on file storage,
   3 replicas and the monitoring port that KEDA reads.

Exit 1 with one line per problem.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(DEPLOY))
import generate  # noqa: E402

KUBE_VERSION = os.environ.get("DUELLSYNC_KUBE_VERSION", "1.31.0")
CRD_SCHEMAS = {
    ("cert-manager.io/v1", "Certificate"): "certificate.json",
    ("cert-manager.io/v1", "Issuer"): "issuer.json",
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.json",
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "prometheusrule.json",
}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"}


class Report:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.checks = 0

    def check(self, ok: bool, where: str, message: str) -> bool:
        self.checks += 1
        if not ok:
            self.problems.append(f"{where}: {message}")
        return ok


# ---------------------------------------------------------------------------------------------
# Rust sources: config structs and consumer names


STRUCT_RE = re.compile(r"pub struct (\w+)\s*\{(.*?)\n\}", re.S)
FIELD_RE = re.compile(r"^\s*pub (\w+):\s*(.+?),\s*$", re.M)
ENUM_RE = re.compile(r"#\[serde\(rename_all = \"(\w+)\"\)\]\s*pub enum (\w+)\s*\{(.*?)\n\}", re.S)


def rust_structs(*paths: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for p in paths:
        for name, body in STRUCT_RE.findall(p.read_text()):
            out[name] = {f: t.strip() for f, t in FIELD_RE.findall(body)}
    return out


def snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def rust_enums(path: Path) -> dict[str, set[str]]:
    out = {}
    for style, name, body in ENUM_RE.findall(path.read_text()):
        variants = re.findall(r"^\s*(?:#\[[^\]]*\]\s*)*([A-Z]\w*),?\s*$", body, re.M)
        conv = (lambda v: v.lower()) if style == "lowercase" else snake
        out[name] = {conv(v) for v in variants}
    return out


def service_config(service: str) -> dict[str, dict[str, str]]:
    return rust_structs(
        ROOT / "services" / service / "src" / "config.rs",
        ROOT / "crates" / "settings" / "src" / "service.rs",
    )


def check_env_path(structs: dict, root: str, path: list[str]) -> str | None:
    """None when `path` names a leaf setting of struct `root`, else why not."""
    fields = structs[root]
    for i, key in enumerate(path):
        if key not in fields:
            return f"`{'.'.join(path[: i + 1])}` is not a setting (known: {', '.join(sorted(fields))})"
        ty = fields[key]
        if ty in structs:
            if i == len(path) - 1:
                return f"`{'.'.join(path)}` is a section, not a value"
            fields = structs[ty]
        elif i != len(path) - 1:
            return f"`{'.'.join(path[: i + 1])}` is a value, not a section"
    return None


def rust_consumers() -> dict[str, set[tuple[str, str]]]:
    """(stream, suffix) of the durable consumers each service creates, read from its source."""
    out: dict[str, set[tuple[str, str]]] = {}
    pat = re.compile(
        r"&(?:duellsync_events::)?STREAM_(\w+),\s*(?:format!\(\"\{SERVICE\}-\{store\}-([a-z_]+)\"\)|\"([a-z_]+)\")"
    )
    for svc in ("change-poller", "order-importer", "status-writeback"):
        src = (ROOT / "services" / svc / "src" / "lib.rs").read_text()
        out[svc] = {(s, a or b) for s, a, b in pat.findall(src)}
    # catalog-publisher: one consumer per stream of `fn subjects`, named after the stream.
    src = ROOT / "services" / "catalog-publisher" / "src"
    lib = (src / "lib.rs").read_text()
    every = "\n".join(f.read_text() for f in sorted(src.glob("*.rs")))
    m = re.search(r"fn subjects\(.*?\n\}", every, re.S)
    if m and 'format!("{SERVICE}-{}-{}", store.id, stream.name.to_lowercase())' in lib:
        streams = re.findall(r"STREAM_(\w+)", m.group(0))
        out["catalog-publisher"] = {(s, s.lower()) for s in streams}
    else:
        out["catalog-publisher"] = set()
    return out


# ---------------------------------------------------------------------------------------------


def load_docs(paths: list[Path], report: Report) -> list[tuple[Path, dict]]:
    docs = []
    for p in paths:
        try:
            for d in yaml.safe_load_all(p.read_text()):
                if d is not None:
                    docs.append((p, d))
        except yaml.YAMLError as e:
            report.check(False, str(p.relative_to(ROOT)), f"not YAML: {e}")
    return docs


def name_of(p: Path, d: dict) -> str:
    return f"{p.relative_to(ROOT)}: {d.get('kind')}/{d.get('metadata', {}).get('name')}"


def schema_checks(docs: list[tuple[Path, dict]], report: Report) -> None:
    import kubernetes_validate

    crd = {k: json.loads((DEPLOY / "schemas" / f).read_text()) for k, f in CRD_SCHEMAS.items()}
    for p, d in docs:
        where = name_of(p, d)
        key = (d.get("apiVersion"), d.get("kind"))
        if key in crd:
            errors = sorted(jsonschema.Draft202012Validator(crd[key]).iter_errors(d), key=lambda e: list(e.path))
            report.check(
                not errors,
                where,
                "; ".join(f"{'.'.join(map(str, e.path)) or '(root)'}: {e.message}" for e in errors[:3]),
            )
            continue
        try:
            kubernetes_validate.validate(d, KUBE_VERSION, strict=True)
            report.check(True, where, "")
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(x) for x in e.path)
            report.check(False, where, f"Kubernetes {KUBE_VERSION} schema: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            report.check(False, where, f"no schema: {e.message} (add one under deploy/schemas/)")


def pod_spec_of(d: dict) -> dict:
    spec = d["spec"]
    if d["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def workload_checks(docs: list[tuple[Path, dict]], report: Report) -> None:
    by_kind: dict[str, list[tuple[Path, dict]]] = {}
    for p, d in docs:
        by_kind.setdefault(d.get("kind"), []).append((p, d))

    def selects(sel: dict, lbl: dict) -> bool:
        return all(lbl.get(k) == v for k, v in sel.items())

    for p, d in docs:
        if d.get("kind") not in WORKLOAD_KINDS:
            continue
        where = name_of(p, d)
        pod = pod_spec_of(d)
        tmpl_meta = d["spec"]["template"].get("metadata", {})
        psc = pod.get("securityContext", {})
        report.check(pod.get("automountServiceAccountToken") is False, where, "automountServiceAccountToken must be false")
        report.check(pod.get("enableServiceLinks") is False, where, "enableServiceLinks must be false (DUELLSYNC_* service links)")
        ann = tmpl_meta.get("annotations", {})
        # A Job runs a command to its end (the store-apply Job): nothing to scrape or probe.
        one_shot = d.get("kind") in ("Job", "CronJob")
        report.check(
            one_shot
            or (ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(generate.ADMIN_PORT)),
            where,
            "pod template needs prometheus.io/scrape and prometheus.io/port annotations",
        )
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            cw = f"{where} container {c['name']}"
            svc = c["name"]
            grace = generate.SHUTDOWN_GRACE.get(svc, 30)
            report.check(
                pod.get("terminationGracePeriodSeconds", 30) >= grace,
                cw,
                f"terminationGracePeriodSeconds must be >= {grace} (the service's shutdown grace)",
            )
            image = c.get("image", "")
            report.check(":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest"), cw, f"image `{image}` needs a fixed tag")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                if one_shot:
                    continue
                pr = c.get(probe)
                ok = report.check(pr is not None, cw, f"no {probe}")
                if ok and "httpGet" in pr:
                    report.check(
                        pr["httpGet"].get("path") == path and pr["httpGet"].get("port") in ("admin", generate.ADMIN_PORT),
                        cw,
                        f"{probe} must GET {path} on the admin port",
                    )
            res = c.get("resources", {})
            for kind in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    report.check(r in res.get(kind, {}), cw, f"resources.{kind}.{r} missing")
            sc = c.get("securityContext", {})
            report.check(sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True, cw, "runAsNonRoot must be true")
            uid = sc.get("runAsUser", psc.get("runAsUser"))
            report.check(isinstance(uid, int) and uid > 0, cw, "runAsUser must be a non-zero number")
            report.check(sc.get("readOnlyRootFilesystem") is True, cw, "readOnlyRootFilesystem must be true")
            report.check(sc.get("allowPrivilegeEscalation") is False, cw, "allowPrivilegeEscalation must be false")
            report.check(sc.get("capabilities", {}).get("drop") == ["ALL"], cw, "capabilities.drop must be [ALL]")
            seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {}))
            report.check(seccomp.get("type") == "RuntimeDefault", cw, "seccompProfile must be RuntimeDefault")
            report.check(c.get("command", [""])[0] == f"/usr/local/bin/{svc}", cw, f"command must start /usr/local/bin/{svc}")

        lbl = tmpl_meta.get("labels", {})
        if d["kind"] in ("Deployment", "StatefulSet"):
            pdbs = [x for _, x in by_kind.get("PodDisruptionBudget", []) if selects(x["spec"]["selector"]["matchLabels"], lbl)]
            report.check(len(pdbs) == 1, where, f"needs exactly one PodDisruptionBudget, found {len(pdbs)}")
            svcs = [x for _, x in by_kind.get("Service", []) if selects(x["spec"].get("selector", {}), lbl)]
            report.check(
                any(any(pt.get("port") == generate.ADMIN_PORT for pt in s["spec"]["ports"]) for s in svcs),
                where,
                "no Service exposes its admin port 9090 (metrics)",
            )
        if d["kind"] == "StatefulSet":
            name = d["metadata"]["name"]
            report.check(d["spec"].get("replicas", 1) == 1, where, "a stateful sink runs exactly 1 replica (one writer per store)")
            headless = [s for s in svcs if s["metadata"]["name"] == d["spec"]["serviceName"]]
            report.check(
                len(headless) == 1 and headless[0]["spec"].get("clusterIP") == "None",
                where,
                "serviceName must name a headless Service selecting its pods",
            )
            vcts = [v["metadata"]["name"] for v in d["spec"].get("volumeClaimTemplates", [])]
            report.check("state" in vcts, where, "needs volumeClaimTemplates `state` for the sled state")
            scaled = [x for _, x in by_kind.get("ScaledObject", []) if x["spec"]["scaleTargetRef"]["name"] == name]
            if scaled:
                report.check("replicas" not in d["spec"], where, "KEDA owns the replica count: leave `replicas` out")
        if d["kind"] == "Deployment":
            name = d["metadata"]["name"]
            hpas = [
                x
                for _, x in by_kind.get("HorizontalPodAutoscaler", [])
                if x["spec"]["scaleTargetRef"]["name"] == name and x["spec"]["scaleTargetRef"]["kind"] == "Deployment"
            ]
            report.check(len(hpas) == 1, where, "needs a HorizontalPodAutoscaler")
            if hpas:
                report.check(hpas[0]["spec"].get("minReplicas", 1) >= 2, where, "HPA minReplicas must be >= 2")
                report.check("replicas" not in d["spec"], where, "the HPA owns the replica count: leave `replicas` out")

    for p, d in by_kind.get("ScaledObject", []):
        where = name_of(p, d)
        target = d["spec"]["scaleTargetRef"]
        sts = [x for _, x in by_kind.get("StatefulSet", []) if x["metadata"]["name"] == target["name"]]
        if target.get("kind") == "StatefulSet":
            report.check(bool(sts), where, f"targets StatefulSet {target['name']}, which does not exist")
            report.check(d["spec"].get("maxReplicaCount", 100) <= 1, where, "a stateful sink scales to at most 1 (one writer per store)")
    for p, d in by_kind.get("ServiceAccount", []):
        report.check(d.get("automountServiceAccountToken") is False, name_of(p, d), "automountServiceAccountToken must be false")


def env_of(container: dict, configmaps: dict[str, dict]) -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    secrets = []
    for src in container.get("envFrom", []):
        if "configMapRef" in src:
            env.update(configmaps.get(src["configMapRef"]["name"], {}).get("data", {}))
        if "secretRef" in src:
            secrets.append(src["secretRef"]["name"])
    for e in container.get("env", []):
        env[e["name"]] = e.get("value", "<from field>")
    return env, secrets


def secret_key_refs(container: dict) -> dict[str, tuple[str, str]]:
    """env name -> (Secret, key) of every variable taken from a Secret key."""
    out = {}
    for e in container.get("env", []):
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            out[e["name"]] = (ref["name"], ref["key"])
    return out


def rust_secret_needs() -> dict[str, set[str]]:
    """Which store secrets (settings keys) each program reads, from the Rust sources: the
    `RECEIVER_SECRETS`/`API_SECRETS` lists of crates/settings and each service's
    `secrets_needed` (absent = every secret)."""
    store_rs = (ROOT / "crates" / "settings" / "src" / "store.rs").read_text()

    def const_list(name: str) -> set[str]:
        m = re.search(rf"pub const {name}: \[&str; \d+\] = \[(.*?)\];", store_rs, re.S)
        return set(re.findall(r'"([a-z_.]+)"', m.group(1))) if m else set()

    receiver, api = const_list("RECEIVER_SECRETS"), const_list("API_SECRETS")
    out = {"syncctl": receiver | api}
    for svc in generate.COMPONENT:
        cfg = (ROOT / "services" / svc / "src" / "config.rs").read_text()
        m = re.search(r"fn secrets_needed\(&self\)[^{]*\{(.*?)\n    \}", cfg, re.S)
        if m and "Needs::RECEIVER" in m.group(1):
            out[svc] = set(receiver)
        else:
            out[svc] = receiver | api
    return out


def mounted_stores(pod: dict, container: dict, stores_path: str) -> list[str] | None:
    vol = next((m["name"] for m in container.get("volumeMounts", []) if m["mountPath"] == stores_path), None)
    if vol is None:
        return None
    v = next(v for v in pod["volumes"] if v["name"] == vol)
    out = []
    for s in v.get("projected", {}).get("sources", []):
        cm = s.get("configMap")
        if cm:
            out.append(cm["name"])
    return out


def store_checks(docs: list[tuple[Path, dict]], report: Report) -> None:
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "ConfigMap"}
    secrets = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "Secret"}
    structs = rust_structs(ROOT / "crates" / "settings" / "src" / "store.rs")
    enums = rust_enums(ROOT / "crates" / "settings" / "src" / "store.rs")
    secret_types = {"Secret"}

    def check_table(where: str, table: dict, struct: str, prefix: str = "") -> list[tuple[str, str]]:
        """Checks keys against the struct; returns (key, env name) of env secrets."""
        found = []
        fields = structs[struct]
        for key, value in table.items():
            full = f"{prefix}{key}"
            if not report.check(key in fields, where, f"unknown setting `{full}` (deny_unknown_fields; known here: {', '.join(sorted(fields))})"):
                continue
            ty = fields[key]
            if ty in structs:
                if report.check(isinstance(value, dict), where, f"`{full}` must be a [table]"):
                    found += check_table(where, value, ty, f"{full}.")
            elif ty in secret_types:
                if isinstance(value, dict):
                    report.check(set(value) in ({"env"}, {"file"}), where, f"`{full}` must be {{ env = \"NAME\" }} or {{ file = \"/path\" }}")
                    if "env" in value:
                        found.append((full, value["env"]))
                else:
                    report.check(False, where, f"`{full}` is a literal secret; keep it in the store's Secret ({{ env = \"NAME\" }})")
            elif ty in enums:
                report.check(value in enums[ty], where, f"`{full}` = {value!r}; use one of {', '.join(sorted(enums[ty]))}")
            elif ty == "bool":
                report.check(isinstance(value, bool), where, f"`{full}` must be true or false")
        return found

    store_envs: dict[str, set[str]] = {}
    store_secret_envs: dict[str, list[tuple[str, str]]] = {}
    secret_needs = rust_secret_needs()
    for svc, keys in generate.SERVICE_SECRETS.items():
        report.check(
            set(keys) == secret_needs.get(svc, set()),
            "deploy/generate.py SERVICE_SECRETS",
            f"{svc}: table {sorted(keys)} but the Rust sources read {sorted(secret_needs.get(svc, set()))}",
        )
    for name, cm in configmaps.items():
        if not name.startswith("store-"):
            continue
        sid = name[len("store-") :]
        where = f"ConfigMap/{name}"
        data = cm.get("data", {})
        if not report.check(list(data) == [f"{sid}.toml"], where, f"must hold exactly one key `{sid}.toml`"):
            continue
        try:
            table = tomllib.loads(data[f"{sid}.toml"])
        except tomllib.TOMLDecodeError as e:
            report.check(False, where, f"{sid}.toml is not TOML: {e}")
            continue
        report.check(table.get("id", sid) == sid, where, "`id` differs from the store's name")
        for req in ("woo", "duell"):
            report.check(req in table, where, f"[{req}] is required")
        report.check(bool(table.get("woo", {}).get("url")), where, "woo.url is required")
        cn = table.get("duell", {}).get("client_number")
        report.check(isinstance(cn, str) and re.fullmatch(r"\d{6}", cn or "") is not None, where, "duell.client_number must be a quoted 6-digit string")
        report.check(
            not (table.get("deduct_stock") and table.get("create_customer_order", True)),
            where,
            "deduct_stock = true needs create_customer_order = false",
        )
        envs = check_table(where, table, "StoreSettings")
        store_envs[sid] = {e for _, e in envs}
        store_secret_envs[sid] = envs
        for key, env in envs:
            report.check(not env.startswith("DUELLSYNC_"), where, f"{key} reads {env}; DUELLSYNC_* names are service settings")
        secret = secrets.get(f"store-{sid}")
        if report.check(secret is not None, where, f"no Secret store-{sid} (deploy/secrets-example/)"):
            keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
            for key, env in envs:
                report.check(env in keys, f"Secret/store-{sid}", f"lacks `{env}`, which {sid}.toml reads for {key}")
            for extra in sorted(keys - {e for _, e in envs}):
                report.check(False, f"Secret/store-{sid}", f"`{extra}` is read by no setting of {sid}.toml")
    all_stores = set(store_envs)

    # Which shard serves each store (the `shard` its ConfigMap gives the registry).
    shard_of: dict[str, str] = {}
    for name, cm in configmaps.items():
        if name.startswith("store-"):
            sid = name[len("store-") :]
            try:
                shard_of[sid] = tomllib.loads(cm["data"][f"{sid}.toml"]).get("shard", "")
            except (KeyError, tomllib.TOMLDecodeError):
                pass
    for sid in sorted(all_stores):
        report.check(bool(shard_of.get(sid)), f"ConfigMap/store-{sid}", "names no `shard`: no stateful service would serve it")

    # The store-apply Job: every store file goes to the registry.
    jobs = [d for _, d in docs if d.get("kind") == "Job" and d["metadata"]["name"].startswith("store-apply-")]
    if report.check(len(jobs) == 1, "deploy/k8s/base", f"needs exactly one store-apply Job, found {len(jobs)}"):
        pod = pod_spec_of(jobs[0])
        c = pod["containers"][0]
        mounted = mounted_stores(pod, c, generate.STORES_PATH) or []
        report.check(
            sorted(m[len("store-") :] for m in mounted) == sorted(all_stores),
            f"Job/{jobs[0]['metadata']['name']}",
            f"must mount every store file at {generate.STORES_PATH}",
        )
        report.check(c["command"][1:4] == ["store", "apply", "-f"], f"Job/{jobs[0]['metadata']['name']}", "must run `syncctl store apply -f`")

    # Workloads: the Secrets of the stores they serve, settings they know, one writer per store.
    served: dict[tuple[str, str], list[str]] = {}
    structs_by_service = {svc: service_config(svc) for svc in generate.COMPONENT}
    for p, d in docs:
        if d.get("kind") not in ("Deployment", "StatefulSet"):
            continue
        pod = pod_spec_of(d)
        for c in pod["containers"]:
            where = f"{name_of(p, d)} container {c['name']}"
            svc = c["name"]
            env, secret_refs = env_of(c, configmaps)
            # Stores come from the registry, not from mounted files: the stores whose Secret a
            # container names are the ones whose `{ env = ... }` secrets it reads.
            refs = secret_key_refs(c)
            ids = sorted({sec[len("store-") :] for sec, _key in refs.values() if sec.startswith("store-")})
            needs = secret_needs.get(svc, set())
            for ref in secret_refs:
                report.check(
                    not ref.startswith("store-"),
                    where,
                    f"loads all of Secret {ref} (envFrom): take only the keys {svc} reads (secretKeyRef)",
                )
            for sid in ids:
                report.check(sid in all_stores, where, f"mounts ConfigMap store-{sid}, which does not exist")
                for key, env_name in store_secret_envs.get(sid, []):
                    got = refs.get(env_name)
                    if key in needs:
                        report.check(
                            got == (f"store-{sid}", env_name),
                            where,
                            f"{svc} reads {key} of store {sid}: needs {env_name} from Secret store-{sid} (secretKeyRef)",
                        )
                    else:
                        report.check(
                            got is None,
                            where,
                            f"gets {env_name} ({key} of store {sid}), which {svc} does not read: an unneeded secret in the pod",
                        )
            for env_name, (secret, key) in refs.items():
                if secret.startswith("store-"):
                    sid = secret[len("store-") :]
                    known = {e: k for k, e in store_secret_envs.get(sid, [])}
                    report.check(
                        sid in ids and env_name in known and known[env_name] in needs,
                        where,
                        f"gets {env_name} from Secret {secret}, which {svc} does not read for a store it loads",
                    )
            # Settings: only what this service's Config knows.
            structs = structs_by_service.get(svc)
            if structs:
                for k, v in env.items():
                    if not k.startswith("DUELLSYNC_"):
                        continue
                    path = [x.lower() for x in k[len("DUELLSYNC_") :].split("__") if x]
                    why = check_env_path(structs, "Config", path)
                    report.check(why is None, where, f"{k}: {why}")
            seal = {e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}) for e in c.get("env", [])}
            report.check(
                seal.get("DUELLSYNC_SEAL__RECEIVER_KEY", {}).get("name") == "duellsync-seal",
                where,
                "needs DUELLSYNC_SEAL__RECEIVER_KEY from Secret duellsync-seal",
            )
            shard = env.get("DUELLSYNC_SHARD")

            def lacks(sids) -> list[str]:
                """Stores with an `{ env }` secret this program reads whose Secret it does not get."""
                return sorted(
                    s for s in sids if s not in ids and any(k in needs for k, _ in store_secret_envs.get(s, []))
                )

            if svc == "console":
                report.check(shard is None, where, "the console serves every store: no DUELLSYNC_SHARD")
                missing = lacks(all_stores)
                report.check(not missing, where, f"needs the Secret of every store, missing {missing}")
                continue
            if svc == "webhook-ingest":
                report.check(shard is None, where, "webhook-ingest serves every store: no DUELLSYNC_SHARD")
                report.check(
                    "DUELLSYNC_SEAL__API_KEY" not in seal,
                    where,
                    "webhook-ingest must not get the API sealing key (it faces the internet)",
                )
                missing = lacks(all_stores)
                report.check(not missing, where, f"needs the Secret of every store, missing {missing}")
                continue
            report.check(
                seal.get("DUELLSYNC_SEAL__API_KEY", {}).get("name") == "duellsync-seal",
                where,
                "needs DUELLSYNC_SEAL__API_KEY from Secret duellsync-seal",
            )
            if not report.check(bool(shard), where, "a stateful service needs DUELLSYNC_SHARD (else it serves every store)"):
                continue
            report.check(re.fullmatch(r"[a-z0-9_-]{1,32}", shard or "") is not None, where, f"DUELLSYNC_SHARD={shard!r} must be a shard name")
            mine = sorted(s for s, sh in shard_of.items() if sh == shard)
            for sid in lacks(mine):
                report.check(False, where, f"serves store {sid} but does not get its secrets from Secret store-{sid}")
            ids = mine
            report.check(
                env.get("DUELLSYNC_STATE_DIR", "").startswith(generate.STATE_ROOT + "/"),
                where,
                f"DUELLSYNC_STATE_DIR must be on the state volume ({generate.STATE_ROOT}/...)",
            )
            for sid in ids:
                served.setdefault((svc, sid), []).append(d["metadata"]["name"])
    for svc in generate.SHARD_SERVICES:
        for sid in sorted(all_stores):
            who = served.get((svc, sid), [])
            report.check(len(who) == 1, f"store {sid}", f"{svc} must serve it exactly once, served by {who or 'nobody'}")


def keda_checks(docs: list[tuple[Path, dict]], report: Report) -> None:
    code = rust_consumers()
    for svc, table in generate.CONSUMERS.items():
        report.check(
            set(table) == code.get(svc, set()),
            "deploy/generate.py CONSUMERS",
            f"{svc}: table {sorted(table)} but the source creates {sorted(code.get(svc, set()))}",
        )
    sts = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "StatefulSet"}
    for p, d in docs:
        if d.get("kind") != "ScaledObject":
            continue
        where = name_of(p, d)
        target = sts.get(d["spec"]["scaleTargetRef"]["name"])
        if target is None:
            continue
        c = pod_spec_of(target)["containers"][0]
        svc = c["name"]
        shard_name = next(e["value"] for e in c["env"] if e["name"] == "DUELLSYNC_SHARD")
        shard = next((sh.stores for sh in generate.load_inputs().shards if sh.name == shard_name), [])
        want = {(s, f"{svc}-{sid}-{suffix}") for sid in shard for s, suffix in code.get(svc, set())}
        have = {(t["metadata"]["stream"], t["metadata"]["consumer"]) for t in d["spec"]["triggers"] if t["type"] == "nats-jetstream"}
        report.check(have == want, where, f"triggers differ from the consumers of {svc} for {shard}: missing {sorted(want - have)}, extra {sorted(have - want)}")


def runbook_checks(docs: list[tuple[Path, dict]], report: Report) -> None:
    """The printed procedures (move a store, rebuild a store's state) name real objects, and the
    rebuild Job is a valid Job that mounts the right volume."""
    import kubernetes_validate

    names = {(d["kind"].lower(), d["metadata"]["name"]) for _, d in docs}
    inp = generate.load_inputs()
    for sh in inp.shards:
        for other in inp.shards:
            if other is sh:
                continue
            store = sh.stores[0]
            where = f"deploy/generate.py move-store {store} {other.name}"
            text = generate.move_store(inp, store, other.name)
            # (`deploy/syncctl` at the start of a line is the script that runs syncctl as a Job.)
            script = re.compile(r"^deploy/syncctl ", re.M)
            report.check((ROOT / "deploy" / "syncctl").exists() or not script.search(text), where, "names deploy/syncctl, which is missing")
            for kind, name in re.findall(r"\b(statefulset|scaledobject|deployment|deploy)/([a-z0-9-]+)(?![/.\w])", script.sub("", text)):
                kind = {"deploy": "deployment"}.get(kind, kind)
                report.check((kind, name) in names, where, f"names {kind}/{name}, which the manifests do not define")
            for svc in generate.SHARD_SERVICES:
                job = yaml.safe_load(generate.rebuild_job(inp, other.name, svc, store))
                jw = f"deploy/generate.py rebuild-job --shard {other.name} --service {svc}"
                try:
                    kubernetes_validate.validate(job, KUBE_VERSION, strict=True)
                except kubernetes_validate.ValidationError as e:
                    report.check(False, jw, f"Job does not validate: {e.message}")
                claim = next(
                    (v["persistentVolumeClaim"]["claimName"] for v in job["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v),
                    None,
                )
                sts = f"{svc}-{other.name}"
                report.check(("statefulset", sts) in names and claim == f"state-{sts}-0", jw, f"mounts {claim}, not the state of {sts}")


def syncctl_checks(report: Report) -> None:
    """The Job that runs syncctl is valid and carries syncctl's own credentials."""
    import kubernetes_validate

    inp = generate.load_inputs()
    where = "deploy/generate.py syncctl-job"
    job = yaml.safe_load(generate.syncctl_run(inp, "syncctl", ["status"]))
    try:
        kubernetes_validate.validate(job, KUBE_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        report.check(False, where, f"Job does not validate: {e.message}")
    vols = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    report.check(
        vols.get("nats-credentials", {}).get("secret", {}).get("secretName") == "nats-syncctl",
        where,
        "syncctl runs with its own NATS credentials (Secret nats-syncctl)",
    )


def dockerfile_checks(report: Report, hadolint: str | None) -> None:
    df = DEPLOY / "Dockerfile"
    text = df.read_text()
    bins = set()
    for cargo in (ROOT / "services").glob("*/Cargo.toml"):
        bins |= set(re.findall(r"\[\[bin\]\]\s*name\s*=\s*\"([^\"]+)\"", cargo.read_text()))
    m = re.search(r"for bin in ([^;]+);", text)
    shipped = set(m.group(1).split()) if m else set()
    for b in sorted(bins | {"syncctl"}):
        report.check(b in shipped, "deploy/Dockerfile", f"does not ship the `{b}` binary")
    report.check("--locked" in text and "cargo build --release" in text, "deploy/Dockerfile", "must build with cargo build --release --locked")
    report.check(re.search(r"^USER \d+:\d+$", text, re.M) is not None, "deploy/Dockerfile", "needs a numeric non-root USER")
    if hadolint:
        r = subprocess.run([hadolint, "--no-color", str(df)], capture_output=True, text=True)
        report.check(r.returncode == 0, "deploy/Dockerfile", "hadolint: " + (r.stdout + r.stderr).strip().replace("\n", " | "))


def _selects(selector: dict, labels: dict) -> bool:
    """A label selector (matchLabels and In-expressions) against pod labels; {} selects all."""
    for k, v in selector.get("matchLabels", {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions", []):
        if e["operator"] == "In" and labels.get(e["key"]) not in e["values"]:
            return False
        if e["operator"] == "NotIn" and labels.get(e["key"]) in e["values"]:
            return False
    return True


def _rule_ports(rule: dict) -> set[int]:
    return {p["port"] for p in rule.get("ports", [])}


def security_checks(docs: list[tuple[Path, dict]], report: Report) -> None:
    """NATS credentials and TLS per workload, the NetworkPolicies, and the permission table
    against the consumers the services create."""
    inp = generate.load_inputs()
    ns = inp.namespace
    policies = [d for _, d in docs if d.get("kind") == "NetworkPolicy" and d["metadata"]["namespace"] == ns]
    where = "deploy/k8s/base/05-network.yaml"
    report.check(
        any(
            p["spec"].get("podSelector") == {}
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress")
            and not p["spec"].get("egress")
            for p in policies
        ),
        where,
        f"namespace {ns} needs a default-deny NetworkPolicy (podSelector {{}}, Ingress and Egress, no rules)",
    )
    configmaps = {d["metadata"]["name"]: d for _, d in docs if d.get("kind") == "ConfigMap"}
    workloads = [(p, d) for p, d in docs if d.get("kind") in ("Deployment", "StatefulSet")]
    for p, d in workloads:
        labels = d["spec"]["template"]["metadata"]["labels"]
        pod = pod_spec_of(d)
        c = pod["containers"][0]
        svc = c["name"]
        w = f"{name_of(p, d)} container {svc}"
        mine = [x for x in policies if _selects(x["spec"]["podSelector"], labels)]
        egress = [r for x in mine for r in x["spec"].get("egress", [])]
        ingress = [r for x in mine for r in x["spec"].get("ingress", [])]
        report.check(any(4222 in _rule_ports(r) for r in egress), w, "no NetworkPolicy lets it reach NATS (4222)")
        report.check(any(53 in _rule_ports(r) for r in egress), w, "no NetworkPolicy lets it resolve names (53)")
        outside = [r for r in egress if any("ipBlock" in t for t in r.get("to", []))]
        if svc == "webhook-ingest":
            report.check(not outside, w, "the internet-facing ingest must not reach outside addresses")
            public = [r for r in ingress if generate.INGEST_PORT in _rule_ports(r)]
            report.check(
                bool(public)
                and all(
                    t.get("namespaceSelector", {}).get("matchLabels", {}).get("kubernetes.io/metadata.name")
                    == inp.network["ingress_namespace"]
                    for r in public
                    for t in r.get("from", [])
                ),
                w,
                f"its public port must be reachable only from the ingress controller's namespace {inp.network['ingress_namespace']}",
            )
        else:
            report.check(bool(outside), w, "calls WooCommerce and DUELL: needs egress to the outside APIs")
        report.check(
            all(
                _rule_ports(r)
                <= {generate.ADMIN_PORT, {"webhook-ingest": generate.INGEST_PORT, "console": generate.CONSOLE_PORT}.get(svc, generate.ADMIN_PORT)}
                for r in ingress
            ),
            w,
            "takes connections on ports other than its own",
        )
        # NATS: TLS, its own credentials.
        env, _ = env_of(c, configmaps)
        report.check(env.get("DUELLSYNC_NATS__URL", "").startswith("tls://"), w, "DUELLSYNC_NATS__URL must be tls://")
        report.check("DUELLSYNC_NATS__ALLOW_PLAINTEXT" not in env, w, "no DUELLSYNC_NATS__ALLOW_PLAINTEXT in a deployment")
        report.check(bool(env.get("DUELLSYNC_NATS__TLS_CA_FILE")), w, "needs DUELLSYNC_NATS__TLS_CA_FILE (the CA of the NATS certificate)")
        shard_name = labels.get("duellsync.io/shard")
        shard = next((x for x in inp.shards if x.name == shard_name), None)
        user = generate.nats_user_of(inp, svc, shard)
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        creds = vols.get("nats-credentials", {}).get("secret", {}).get("secretName")
        report.check(
            creds == f"nats-{user.name}" and env.get("DUELLSYNC_NATS__NKEY_FILE", "").startswith(generate.NATS_CREDENTIALS_DIR),
            w,
            f"must authenticate as NATS user {user.name}: Secret nats-{user.name} mounted, DUELLSYNC_NATS__NKEY_FILE pointing into it",
        )
    # The permission table's consumers are the consumers the services create.
    code = rust_consumers()
    for svc, spec in inp.permissions["users"].items():
        if svc not in generate.CONSUMERS:
            continue
        table = set()
        for c in spec.get("consumers", []):
            m = re.fullmatch(rf"{re.escape(svc)}-\{{store\}}-([a-z_]+)", c["name"])
            table.add((c["stream"], m.group(1) if m else c["name"]))
        report.check(
            table == code.get(svc, set()),
            "deploy/nats/permissions.toml",
            f"[users.{svc}] consumers {sorted(table)} but the service creates {sorted(code.get(svc, set()))}",
        )
    for svc in generate.COMPONENT:
        report.check(svc in inp.permissions["users"], "deploy/nats/permissions.toml", f"no [users.{svc}]")


def nats_checks(report: Report) -> None:
    where = "deploy/nats/values.yaml"
    v = yaml.safe_load((DEPLOY / "nats" / "values.yaml").read_text())
    cfg = v.get("config", {})
    js = cfg.get("jetstream", {})
    report.check(js.get("enabled") is True, where, "config.jetstream.enabled must be true")
    fs = js.get("fileStore", {})
    report.check(fs.get("enabled") is True and fs.get("pvc", {}).get("enabled") is True, where, "JetStream needs fileStore on a PVC")
    replicas = cfg.get("cluster", {}).get("replicas", 1) if cfg.get("cluster", {}).get("enabled") else 1
    inp = generate.load_inputs()
    report.check(
        inp.shared["nats_replicas"] <= replicas,
        where,
        f"streams want {inp.shared['nats_replicas']} replicas but the cluster has {replicas} servers",
    )
    report.check(cfg.get("monitor", {}).get("enabled") is True, where, "config.monitor must be on (KEDA, exporter)")
    port = cfg.get("monitor", {}).get("port", 8222)
    report.check(inp.shared["nats_monitoring_endpoint"].endswith(f":{port}"), "deploy/deployment.toml", "nats_monitoring_endpoint must use the monitor port")
    report.check(v.get("promExporter", {}).get("enabled") is True, where, "promExporter must be on (lag and DLQ metrics)")
    tls = cfg.get("nats", {}).get("tls", {})
    report.check(tls.get("enabled") is True and bool(tls.get("secretName")), where, "config.nats.tls must be on (clients over TLS only)")
    ctl = cfg.get("cluster", {}).get("tls", {})
    report.check(ctl.get("enabled") is True, where, "config.cluster.tls must be on (routes over TLS)")
    certs = [d for _, d in load_docs(sorted((DEPLOY / "k8s" / "nats").glob("*.yaml")), Report()) if d.get("kind") == "Certificate"]
    report.check(
        any(c["spec"]["secretName"] == tls.get("secretName") for c in certs),
        where,
        f"config.nats.tls.secretName {tls.get('secretName')!r} is issued by no Certificate in deploy/k8s/nats/",
    )
    contexts = v.get("natsBox", {}).get("contexts", {})
    box = {ctx.get("nkey", {}).get("secretName") for ctx in contexts.values()}
    report.check(
        box == set(generate.NATS_BOX_SECRETS.values()),
        where,
        f"natsBox.contexts must read the nats-box seeds from {sorted(generate.NATS_BOX_SECRETS.values())}",
    )
    accounts = yaml.safe_load((DEPLOY / "nats" / "accounts.yaml").read_text())
    merged = accounts.get("config", {}).get("merge", {})
    users = [u for a in merged.get("accounts", {}).values() for u in a.get("users", [])]
    report.check(
        bool(users) and all("nkey" in u and "permissions" in u for u in users),
        "deploy/nats/accounts.yaml",
        "every user needs an nkey and permissions (no anonymous, no unrestricted user)",
    )
    report.check("no_auth_user" not in merged, "deploy/nats/accounts.yaml", "no no_auth_user: anonymous clients are refused")


def main() -> int:
    started = time.monotonic()
    report = Report()
    hadolint = sys.argv[1] if len(sys.argv) > 1 else None

    # 1. Fresh?
    try:
        rendered = generate.render(generate.load_inputs())
    except generate.InputError as e:
        print(f"deploy inputs: {e}", file=sys.stderr)
        return 1
    for path, text in rendered.items():
        report.check(path.exists() and path.read_text() == text, str(path.relative_to(ROOT)), "stale: run `python3 deploy/generate.py`")
    for extra in sorted(generate.managed_files() - set(rendered)):
        report.check(False, str(extra.relative_to(ROOT)), "not generated by deploy/generate.py: remove it")

    paths = sorted((DEPLOY / "k8s").rglob("*.yaml")) + sorted((DEPLOY / "secrets-example").rglob("*.yaml"))
    docs = load_docs(paths, report)
    schema_checks(docs, report)
    workload_checks(docs, report)
    store_checks(docs, report)
    keda_checks(docs, report)
    security_checks(docs, report)
    runbook_checks(docs, report)
    syncctl_checks(report)
    dockerfile_checks(report, hadolint)
    nats_checks(report)

    took = time.monotonic() - started
    for line in report.problems:
        print(f"FAIL {line}")
    print(
        f"validate-deploy: {len(docs)} objects in {len(paths)} files, {report.checks} checks, "
        f"{len(report.problems)} problems (Kubernetes {KUBE_VERSION} schemas, {took:.1f}s)"
    )
    return 1 if report.problems else 0


if __name__ == "__main__":
    sys.exit(main())
