"""Deployment files (Dockerfile, compose, nginx, Kubernetes) parse and agree with config.py.

Nothing here can be built or applied on this machine, so the tests read the files: every setting
they name exists, ports and probes match the app, and no secret is baked in.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest
import yaml

import config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
# Settings that production adds: gunicorn.conf.py reads the first four, the app does not read the
# last one yet. A name leaves this list once config.py reads it.
SETTINGS_PRODUCTION_ADDS = frozenset({"WORKER_CLASS", "GUNICORN_TIMEOUT", "GRACEFUL_TIMEOUT", "WORKER_CONNECTIONS",
                                      "RATELIMIT_ENABLED"})
# Variables of the image itself rather than settings of the app.
IMAGE_VARIABLES = frozenset({"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
                             "PIP_DISABLE_PIP_VERSION_CHECK"})
SECRET_ENDINGS = ("KEY", "KEYS", "SECRET", "PASSWORD", "TOKEN")  # not MAX_TOKENS, a budget
PLACEHOLDER = "change-me"
# Built from parts so tests/test_completeness.py does not count this file as testing these routes.
HEALTH = "/health"
LIVE, READY = f"{HEALTH}/live", f"{HEALTH}/ready"


@pytest.fixture
def defaults(monkeypatch, tmp_path) -> config.Config:
    """config.py's defaults, whatever this shell or a local .env sets."""
    monkeypatch.setattr(config, "load_dotenv", lambda *a, **k: None)
    for name in settings_names(config.Config()) | {"AZURE_API_URL", "API_KEY"}:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    return config.Config()


def settings_names(settings: config.Config) -> set[str]:
    return {name for name in vars(settings) if name.isupper()}


@pytest.fixture
def known(defaults) -> set[str]:
    """Every name a deployment file may set."""
    return settings_names(defaults) | SETTINGS_PRODUCTION_ADDS


def largest_body_mb(settings) -> float:
    return max(float(settings["MAX_FILE_SIZE_MB"]), float(settings["IMPORT_MAX_MB"]))


def megabytes(size: str) -> float:
    """nginx's `51m` / `51200k` / `1g` in MB."""
    number, unit = re.fullmatch(r"(\d+)([kmg]?)", size.lower()).groups()
    return int(number) * {"k": 1 / 1024, "": 1 / 1024 ** 2, "m": 1, "g": 1024}[unit]


def looks_secret(name: str) -> bool:
    return name.upper().endswith(SECRET_ENDINGS)


# -- Dockerfile ---------------------------------------------------------------------------------

def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
    return [(parts[0].upper(), parts[1] if len(parts) > 1 else "")
            for parts in (line.strip().split(None, 1) for line in joined.splitlines() if line.strip())]


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def env_assignments(instructions) -> dict[str, str]:
    found = {}
    for keyword, arguments in instructions:
        if keyword == "ENV":
            found.update(part.split("=", 1) for part in shlex.split(arguments))
    return found


def arguments(instructions, keyword: str) -> list[str]:
    return [args for kw, args in instructions if kw == keyword]


def test_deploy_dockerfile_stages_use_the_pinned_bases():
    bases = [args.split()[0] for args in arguments(dockerfile(), "FROM")]
    assert bases == ["node:20-slim", "python:3.11-slim", "python:3.11-slim"]
    assert "npm ci" in " ".join(arguments(dockerfile(), "RUN"))
    assert any("-r requirements.txt" in run for run in arguments(dockerfile(), "RUN"))


def test_deploy_dockerfile_takes_only_node_modules_from_the_node_stage():
    from_node = [args.split()[1:] for args in arguments(final_stage(), "COPY") if args.startswith("--from=node")]
    assert from_node == [["/build/node_modules", "./node_modules"]]


def test_deploy_dockerfile_runs_as_non_root_user_before_cmd():
    keywords = [keyword for keyword, _ in final_stage()]
    user = arguments(final_stage(), "USER")[-1].split(":")[0]
    assert keywords.index("USER") < keywords.index("CMD")
    assert user not in ("root", "0") and "USER" not in keywords[keywords.index("USER") + 1:]


def test_deploy_dockerfile_exposes_the_default_port(defaults):
    assert arguments(final_stage(), "EXPOSE") == [str(defaults.PORT)]
    assert arguments(final_stage(), "WORKDIR") == ["/app"]


def test_deploy_dockerfile_healthcheck_probes_liveness_with_urllib(defaults):
    (check,) = arguments(final_stage(), "HEALTHCHECK")
    assert f"http://127.0.0.1:{defaults.PORT}{LIVE}'" in check and "urllib.request.urlopen" in check


def test_deploy_dockerfile_cmd_is_gunicorn_with_its_config():
    assert [json.loads(args) for args in arguments(final_stage(), "CMD")] == [
        ["gunicorn", "-c", "gunicorn.conf.py", "app:app"]]


def test_deploy_dockerfile_environment_sets_production_and_no_secret(known):
    variables = env_assignments(dockerfile())
    assert not [name for name in variables if looks_secret(name)]
    assert not [kw for kw, args in dockerfile() if kw == "ARG" and looks_secret(args.split("=")[0])]
    assert set(variables) - IMAGE_VARIABLES <= known
    assert (variables["APP_ENV"], variables["HOST"]) == ("production", "0.0.0.0")


def test_deploy_dockerfile_instance_volume_belongs_to_the_app_user():
    instructions = final_stage()
    instance = env_assignments(instructions)["INSTANCE_PATH"]
    user = arguments(instructions, "USER")[-1]
    chown = [i for i, (kw, args) in enumerate(instructions) if kw == "RUN" and f"chown {user} {instance}" in args]
    volume = [i for i, (kw, args) in enumerate(instructions) if kw == "VOLUME" and json.loads(args) == [instance]]
    assert chown and volume and chown[0] < volume[0]  # ownership set after VOLUME would be discarded


def test_deploy_dockerignore_keeps_secrets_and_local_state_out():
    patterns = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")}
    assert {".env", ".venv", "node_modules", "instance", ".git", "artifacts", "benchmarks/.data"} <= patterns
    assert "!.env" not in patterns


# -- docker compose -----------------------------------------------------------------------------

@pytest.fixture
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_deploy_compose_app_environment_names_are_settings(compose, known):
    app = compose["services"]["app"]
    assert app["env_file"] == ".env" and app["build"] == "."
    assert set(app["environment"]) <= known and not [n for n in app["environment"] if looks_secret(n)]
    assert app["environment"]["REDIS_URL"] == "redis://redis:6379/0"
    assert app["environment"]["MONGODB_URI"] == "mongodb://mongo:27017"


@pytest.mark.parametrize("service, probe", [("redis", ["CMD", "redis-cli", "ping"]),
                                            ("mongo", ["CMD", "mongosh"])])
def test_deploy_compose_app_waits_for_healthy_backing_service(compose, service, probe):
    assert compose["services"]["app"]["depends_on"][service] == {"condition": "service_healthy"}
    assert compose["services"][service]["healthcheck"]["test"][:len(probe)] == probe


def test_deploy_compose_redis_keeps_sessions_across_restarts(compose):
    """Sessions are the only key to an anonymous user's data: Redis appends to a file on a volume."""
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.split(":")[1] == "/data" for volume in redis["volumes"])
    assert redis["volumes"][0].split(":")[0] in compose["volumes"]


def test_deploy_compose_nginx_serves_the_repo_conf_on_8080(compose):
    nginx = compose["services"]["nginx"]
    source = nginx["volumes"][0].split(":")[0]
    assert nginx["image"] == "nginx:1.27-alpine" and (ROOT / source).is_file()
    assert nginx["ports"] == ["8080:80"]
    assert compose["services"]["mongo"]["volumes"][0].split(":")[0] in compose["volumes"]


# -- nginx --------------------------------------------------------------------------------------

def nginx_block(opening: str) -> str:
    """The text between the braces of the block that starts with `opening`."""
    text = (ROOT / "deploy" / "nginx.conf").read_text()
    text = re.sub(r"#.*", "", text)
    start = text.index(opening + " {") + len(opening) + 2
    depth, end = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[end], 0)
        end += 1
    return text[start:end - 1]


def directives(block: str) -> set[str]:
    return {" ".join(statement.split()) for statement in block.split(";") if statement.strip() and "{" not in statement}


def test_deploy_nginx_upstream_is_sticky(defaults):
    upstream = directives(nginx_block("upstream chat_app"))
    assert upstream == {"hash $cookie_session consistent", f"server app:{defaults.PORT}"}  # not ip_hash: one NAT, one instance


@pytest.mark.parametrize("directive", [
    "proxy_pass http://chat_app", "proxy_http_version 1.1", "proxy_set_header Upgrade $http_upgrade",
    'proxy_set_header Connection "upgrade"', "proxy_buffering off", "proxy_read_timeout 3600s",
    "proxy_send_timeout 3600s", "proxy_set_header X-Request-ID $request_id"])
def test_deploy_nginx_socketio_location_upgrades_and_streams(directive):
    assert directive in directives(nginx_block("location /socket.io"))


@pytest.mark.parametrize("directive", [
    "proxy_pass http://chat_app", "proxy_buffering off", "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for",
    "proxy_set_header X-Forwarded-Proto $scheme", "proxy_set_header X-Forwarded-Host $http_host",
    "proxy_set_header X-Request-ID $request_id"])
def test_deploy_nginx_root_location_forwards_client_facts(directive):
    assert directive in directives(nginx_block("location /"))


def nginx_top_level() -> set[str]:
    """The directives outside every block (the http context, where limit zones are declared)."""
    text = re.sub(r"#.*", "", (ROOT / "deploy" / "nginx.conf").read_text())
    while "{" in text:
        text = re.sub(r"[^;{}]*\{[^{}]*\}", ";", text)
    return directives(text)


def limit_zones() -> dict[str, tuple[str, str]]:
    """zone name -> (limit_conn_zone or limit_req_zone, the key it counts by)."""
    zones = {}
    for statement in nginx_top_level():
        kind, key, *options = statement.split()
        if kind in ("limit_conn_zone", "limit_req_zone"):
            (zone,) = [option.split("=")[1].split(":")[0] for option in options if option.startswith("zone=")]
            zones[zone] = (kind, key)
    return zones


def location_limits(location: str) -> dict[str, list[str]]:
    """limit_conn / limit_req directive -> its arguments, in one location."""
    found = {}
    for statement in directives(nginx_block(location)):
        kind, *arguments = statement.split()
        if kind in ("limit_conn", "limit_req"):
            found[kind] = arguments
    return found


def test_deploy_nginx_limit_zones_count_per_client_address():
    zones = limit_zones()
    assert {kind for kind, _ in zones.values()} == {"limit_conn_zone", "limit_req_zone"}
    assert {key for _, key in zones.values()} == {"$binary_remote_addr"}


@pytest.mark.parametrize("location", ["location /socket.io", "location /"])
def test_deploy_nginx_location_limits_connections_and_requests_per_address(location):
    limits = location_limits(location)
    zones = limit_zones()
    conn_zone, conn_count = limits["limit_conn"]
    (req_zone,) = [argument.split("=")[1] for argument in limits["limit_req"] if argument.startswith("zone=")]
    assert zones[conn_zone][0] == "limit_conn_zone" and int(conn_count) > 0
    assert zones[req_zone][0] == "limit_req_zone" and "nodelay" in limits["limit_req"]


def test_deploy_nginx_socket_limit_leaves_room_for_the_apps_own_cap(defaults):
    """nginx must not refuse sockets before the app's MAX_SOCKETS_PER_IP would (long-polling
    holds up to two requests per socket)."""
    assert int(location_limits("location /socket.io")["limit_conn"][1]) >= 2 * defaults.MAX_SOCKETS_PER_IP


def test_deploy_nginx_limits_answer_429():
    assert {"limit_conn_status 429", "limit_req_status 429"} <= directives(nginx_block("server"))


def test_deploy_nginx_keeps_metrics_private():
    assert directives(nginx_block("location = /metrics")) == {"deny all"}


def test_deploy_nginx_body_limit_covers_uploads_and_imports(defaults):
    (limit,) = re.findall(r"^\s*client_max_body_size\s+(\S+);", nginx_block("server"), re.MULTILINE)
    assert megabytes(limit) >= largest_body_mb(vars(defaults))


# -- Kubernetes ---------------------------------------------------------------------------------

def k8s(name: str) -> dict:
    (document,) = yaml.safe_load_all((K8S / name).read_text())
    return document


def pod_spec() -> dict:
    return k8s("deployment.yaml")["spec"]["template"]["spec"]


def container() -> dict:
    (only,) = pod_spec()["containers"]
    return only


@pytest.mark.parametrize("name, api_version, kind", [
    ("deployment.yaml", "apps/v1", "Deployment"), ("service.yaml", "v1", "Service"),
    ("ingress.yaml", "networking.k8s.io/v1", "Ingress"), ("configmap.yaml", "v1", "ConfigMap"),
    ("secret.example.yaml", "v1", "Secret"), ("hpa.yaml", "autoscaling/v2", "HorizontalPodAutoscaler")])
def test_deploy_k8s_file_holds_one_object_of_its_kind(name, api_version, kind):
    document = k8s(name)
    assert (document["apiVersion"], document["kind"]) == (api_version, kind)
    assert document["metadata"]["labels"] == {"app.kubernetes.io/name": "chat"}


def test_deploy_k8s_env_names_are_settings(known):
    config_map, secret = k8s("configmap.yaml")["data"], k8s("secret.example.yaml")["stringData"]
    assert set(config_map) <= known and set(secret) <= known
    assert all(isinstance(value, str) for value in config_map.values())  # Kubernetes refuses others
    assert not [name for name in config_map if looks_secret(name)]


def test_deploy_k8s_secret_template_holds_only_placeholders():
    secret = k8s("secret.example.yaml")
    assert "data" not in secret and set(secret["stringData"].values()) == {PLACEHOLDER}
    assert {"SECRET_KEY", "OPENAI_API_KEY", "FALLBACK_API_KEY"} == set(secret["stringData"])


def test_deploy_k8s_deployment_reads_the_configmap_and_secret():
    sources = [next(iter(source.items())) for source in container()["envFrom"]]
    assert sources == [("configMapRef", {"name": k8s("configmap.yaml")["metadata"]["name"]}),
                       ("secretRef", {"name": k8s("secret.example.yaml")["metadata"]["name"]})]


def test_deploy_k8s_container_port_is_the_default_port(defaults):
    assert container()["ports"] == [{"name": "http", "containerPort": defaults.PORT}]
    assert k8s("configmap.yaml")["data"]["PORT"] == str(defaults.PORT)


@pytest.mark.parametrize("probe, path", [("livenessProbe", LIVE), ("readinessProbe", READY)])
def test_deploy_k8s_probes_hit_the_health_routes(probe, path):
    check = container()[probe]["httpGet"]
    assert check["path"] == path
    assert check["port"] in {port["name"] for port in container()["ports"]}


def test_deploy_k8s_pod_runs_as_the_images_non_root_user():
    user = int(arguments(final_stage(), "USER")[-1].split(":")[0])
    security = pod_spec()["securityContext"]
    assert security["runAsNonRoot"] is True and security["runAsUser"] == user and security["fsGroup"] == user
    assert container()["securityContext"]["allowPrivilegeEscalation"] is False


def test_deploy_k8s_grace_period_outlasts_gunicorns_graceful_timeout():
    assert pod_spec()["terminationGracePeriodSeconds"] > int(k8s("configmap.yaml")["data"]["GRACEFUL_TIMEOUT"])


def test_deploy_k8s_resources_have_requests_and_limits():
    resources = container()["resources"]
    assert set(resources["requests"]) == set(resources["limits"]) == {"cpu", "memory"}


def test_deploy_k8s_instance_volume_is_mounted_at_instance_path():
    (mount,) = container()["volumeMounts"]
    assert mount["mountPath"] == k8s("configmap.yaml")["data"]["INSTANCE_PATH"]
    assert {"name": mount["name"], "emptyDir": {}} in pod_spec()["volumes"]


def test_deploy_k8s_service_selects_the_pods_with_client_ip_affinity():
    service = k8s("service.yaml")["spec"]
    pod_labels = k8s("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert service["type"] == "ClusterIP" and service["sessionAffinity"] == "ClientIP"
    assert service["selector"].items() <= pod_labels.items()
    assert service["selector"] == k8s("deployment.yaml")["spec"]["selector"]["matchLabels"]
    assert service["ports"][0]["targetPort"] == container()["ports"][0]["name"]


def test_deploy_k8s_ingress_is_sticky_by_cookie_with_long_timeouts():
    ingress = k8s("ingress.yaml")
    notes = {key.removeprefix("nginx.ingress.kubernetes.io/"): value
             for key, value in ingress["metadata"]["annotations"].items()}
    assert notes["affinity"] == "cookie" and int(notes["proxy-read-timeout"]) >= 3600
    assert megabytes(notes["proxy-body-size"]) >= largest_body_mb(k8s("configmap.yaml")["data"])
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["backend"]["service"] == {"name": k8s("service.yaml")["metadata"]["name"],
                                          "port": {"name": k8s("service.yaml")["spec"]["ports"][0]["name"]}}


def test_deploy_k8s_hpa_scales_the_deployment_on_cpu():
    spec = k8s("hpa.yaml")["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": k8s("deployment.yaml")["metadata"]["name"]}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
    assert "replicas" not in k8s("deployment.yaml")["spec"]  # the HPA owns the count


def test_deploy_production_settings_are_all_used():
    """No dead names in SETTINGS_PRODUCTION_ADDS: each is set by some deployment file."""
    files = [ROOT / "Dockerfile", ROOT / "docker-compose.yml", *K8S.glob("*.yaml")]
    texts = "\n".join(path.read_text() for path in files)
    assert {name for name in SETTINGS_PRODUCTION_ADDS if not re.search(rf"\b{name}\b", texts)} == set()
