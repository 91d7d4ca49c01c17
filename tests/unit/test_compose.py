"""The reference deployment (docker-compose.yml, .env.example, Grafana provisioning,
the InfluxDB init script) is valid and keeps its promises.

No Docker engine runs here: `docker-compose config` (Compose 1.29, Debian package
`docker-compose`) validates and interpolates the file without one, and the tests read
the configuration it prints, i.e. what Docker would actually run.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from heatstream.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
DATASOURCE = ROOT / "grafana" / "provisioning" / "datasources" / "influxdb.yaml"
DASHBOARD_PROVIDER = ROOT / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml"
DBRP_SCRIPT = ROOT / "deploy" / "influxdb" / "10-dbrp.sh"

HEATSTREAM_SERVICES = ("topics", "worker", "sink", "simulator")
PLACEHOLDER = "change-me"  # how .env.example marks a value that must be replaced
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
INSTALL_HINT = (
    "docker-compose is not installed, so docker-compose.yml cannot be validated. "
    "Install it with `apt-get install -y docker-compose` (Debian's Compose 1.29; "
    "`docker-compose config` needs no Docker engine)."
)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)


def _compose_variables() -> tuple[set[str], set[str]]:
    """(every variable the compose file interpolates, those it requires with `:?`).

    Read from the parsed YAML, not the raw text, so comments do not count."""
    text = " ".join(_strings(yaml.safe_load(COMPOSE_FILE.read_text())))
    referenced = set(re.findall(r"\$\{(\w+)", text))
    required = set(re.findall(r"\$\{(\w+):\?", text))
    return referenced, required


REFERENCED_VARS, REQUIRED_VARS = _compose_variables()


def _read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        assert sep, f"{path.name}:{number}: not KEY=VALUE: {line!r}"
        values[key.strip()] = value.strip()
    return values


def _write_env_file(path: Path, values: dict[str, str]) -> Path:
    path.write_text("".join(f"{key}={value}\n" for key, value in values.items()))
    return path


def _docker_compose() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def _compose_config(env_file: Path) -> subprocess.CompletedProcess[str]:
    # Only PATH, HOME and LANG from the caller: a variable in the shell would override
    # the env file and make the result depend on who runs the tests.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(env_file.parent)}
    env["LANG"] = "C.UTF-8"
    return subprocess.run(
        [
            _docker_compose(),
            "--file",
            str(COMPOSE_FILE),
            "--env-file",
            str(env_file),
            "--profile",
            "demo",
            "config",
        ],
        cwd=env_file.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    return _read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def test_secrets() -> dict[str, str]:
    """A distinctive value for each required secret, to recognise it in the output."""
    return {name: f"test-{name.lower()}-{secrets.token_hex(8)}" for name in REQUIRED_VARS}


@pytest.fixture(scope="module")
def test_env_file(
    tmp_path_factory: pytest.TempPathFactory,
    example_env: dict[str, str],
    test_secrets: dict[str, str],
) -> Path:
    folder = tmp_path_factory.mktemp("compose-env")
    return _write_env_file(folder / ".env", {**example_env, **test_secrets})


@pytest.fixture(scope="module")
def config(test_env_file: Path) -> dict[str, Any]:
    """What `docker-compose config` resolves the deployment to, with the test env file."""
    result = _compose_config(test_env_file)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"
    parsed = yaml.safe_load(result.stdout)
    assert isinstance(parsed, dict)
    return parsed


def _service(config: dict[str, Any], name: str) -> dict[str, Any]:
    services = config["services"]
    assert name in services, f"no service {name!r} in docker-compose.yml"
    service = services[name]
    assert isinstance(service, dict)
    return service


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """target -> source of a service's volumes (short or long syntax)."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            mounts[volume["target"]] = str(volume.get("source", ""))
        else:
            source, target = volume.split(":")[:2]
            mounts[target] = source
    return mounts


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec.get("condition", "service_started") for name, spec in deps.items()}


# --- the compose file resolves -----------------------------------------------------


def test_docker_compose_is_installed() -> None:
    _docker_compose()


def test_env_example_copied_as_is_gives_a_valid_deployment(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    shutil.copyfile(ENV_EXAMPLE, env_file)
    result = _compose_config(env_file)
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"


def test_every_service_is_there(config: dict[str, Any]) -> None:
    assert set(config["services"]) == {"kafka", "influxdb", "grafana", *HEATSTREAM_SERVICES}


def test_third_party_images_are_pinned(config: dict[str, Any]) -> None:
    expected = {
        "kafka": "apache/kafka:",
        "influxdb": "influxdb:2.7",
        "grafana": "grafana/grafana-oss:",
    }
    for name, prefix in expected.items():
        image = _service(config, name)["image"]
        assert image.startswith(prefix), f"{name}: {image}"
        tag = image.rpartition(":")[2]
        assert tag != "latest" and re.fullmatch(r"\d+\.\d+\.\d+", tag), f"{name}: unpinned {image}"


# --- Kafka ---------------------------------------------------------------------------


def test_kafka_runs_kraft_as_a_single_combined_node(config: dict[str, Any]) -> None:
    kafka = _service(config, "kafka")
    env = {key: str(value) for key, value in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert not any("ZOOKEEPER" in key for key in env), "KRaft needs no ZooKeeper"
    assert env["CLUSTER_ID"], "KRaft formats its storage with a cluster id"
    # In-network clients reach the broker as kafka:9092, the address heatstream uses.
    assert "://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    assert "test" in kafka["healthcheck"]
    data_dir = env["KAFKA_LOG_DIRS"]
    assert _mounts(kafka)[data_dir] in config["volumes"], "Kafka's log must be a named volume"


# --- InfluxDB ------------------------------------------------------------------------


def test_influxdb_is_set_up_from_the_env_file(
    config: dict[str, Any], test_secrets: dict[str, str]
) -> None:
    influxdb = _service(config, "influxdb")
    env = influxdb["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_PASSWORD"] == test_secrets["INFLUXDB_ADMIN_PASSWORD"]
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"] == test_secrets["INFLUXDB_ADMIN_TOKEN"]
    for key in ("USERNAME", "ORG", "BUCKET"):
        assert env[f"DOCKER_INFLUXDB_INIT_{key}"], key
    assert "test" in influxdb["healthcheck"]
    assert _mounts(influxdb)["/var/lib/influxdb2"] in config["volumes"]


def test_influxdb_init_script_creates_the_dbrp_mapping(config: dict[str, Any]) -> None:
    influxdb = _service(config, "influxdb")
    assert Path(_mounts(influxdb)["/docker-entrypoint-initdb.d"]) == DBRP_SCRIPT.parent
    # The image runs only executable *.sh files of that folder (run-parts).
    assert DBRP_SCRIPT.stat().st_mode & stat.S_IXUSR, f"{DBRP_SCRIPT} must be executable"
    script = DBRP_SCRIPT.read_text()
    assert "influx v1 dbrp create" in script
    for flag in ("--bucket-id", "--db", "--rp", "--default"):
        assert flag in script, flag
    syntax = subprocess.run(["bash", "-n", str(DBRP_SCRIPT)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    # The mapped database is the one heatstream and Grafana query.
    env = influxdb["environment"]
    assert env["HEATSTREAM_DBRP_DATABASE"] == "heatstream"
    assert env["HEATSTREAM_DBRP_RETENTION_POLICY"] == "autogen"
    sink_env = _service(config, "sink")["environment"]
    assert sink_env["HEATSTREAM_INFLUXDB__DATABASE"] == env["HEATSTREAM_DBRP_DATABASE"]


# --- Grafana -------------------------------------------------------------------------


def test_grafana_mounts_provisioning_and_dashboards(
    config: dict[str, Any], test_secrets: dict[str, str]
) -> None:
    grafana = _service(config, "grafana")
    mounts = _mounts(grafana)
    assert Path(mounts["/etc/grafana/provisioning"]) == ROOT / "grafana" / "provisioning"
    assert Path(mounts["/var/lib/grafana/dashboards"]) == ROOT / "grafana" / "dashboards"
    assert (ROOT / "grafana" / "dashboards").is_dir()
    env = grafana["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == test_secrets["GRAFANA_ADMIN_PASSWORD"]
    assert env["INFLUX_TOKEN"] == test_secrets["INFLUXDB_ADMIN_TOKEN"]
    published = [
        port if isinstance(port, str) else f":{port['target']}" for port in grafana["ports"]
    ]
    assert any(re.search(r":3000(/tcp)?$", port) for port in published), published


def test_datasource_is_influxql_with_the_token_from_the_environment() -> None:
    document = yaml.safe_load(DATASOURCE.read_text())
    assert document["apiVersion"] == 1
    (source,) = document["datasources"]
    assert source["type"] == "influxdb"
    assert source["uid"] == "heatstream-influxdb"
    assert source["url"] == "http://influxdb:8086"
    assert source["isDefault"] is True
    json_data = source.get("jsonData", {})
    assert json_data.get("version", "InfluxQL") == "InfluxQL", "dashboards are InfluxQL, not Flux"
    assert source.get("database", json_data.get("dbName")) == "heatstream"
    assert json_data.get("dbName", "heatstream") == "heatstream"
    assert json_data["httpHeaderName1"] == "Authorization"
    header = source["secureJsonData"]["httpHeaderValue1"]
    assert re.fullmatch(r"Token \$(INFLUX_TOKEN|\{INFLUX_TOKEN\})", header), header


def test_dashboard_provider_reads_the_mounted_folder(config: dict[str, Any]) -> None:
    document = yaml.safe_load(DASHBOARD_PROVIDER.read_text())
    (provider,) = document["providers"]
    assert provider["type"] == "file"
    mounted = _mounts(_service(config, "grafana"))
    assert provider["options"]["path"] in mounted
    assert Path(mounted[provider["options"]["path"]]) == ROOT / "grafana" / "dashboards"


# --- heatstream services -------------------------------------------------------------


def test_heatstream_services_run_the_heatstream_commands(config: dict[str, Any]) -> None:
    commands = {name: _service(config, name)["command"] for name in HEATSTREAM_SERVICES}
    assert commands["worker"] == ["heatstream", "worker"]
    assert commands["sink"] == ["heatstream", "sink"]
    assert commands["simulator"][:2] == ["heatstream", "simulate"]
    assert commands["topics"] == ["heatstream", "topics", "create"]
    for name in HEATSTREAM_SERVICES:
        assert _service(config, name)["build"]["context"] == str(ROOT), name


def test_heatstream_services_wait_for_healthy_dependencies(config: dict[str, Any]) -> None:
    for name in HEATSTREAM_SERVICES:
        assert _depends_on(_service(config, name))["kafka"] == "service_healthy", name
    for name in ("worker", "sink", "simulator"):
        assert _depends_on(_service(config, name))["topics"] == "service_completed_successfully"
    assert _depends_on(_service(config, "sink"))["influxdb"] == "service_healthy"


def test_simulator_runs_only_in_the_demo_profile(config: dict[str, Any]) -> None:
    assert _service(config, "simulator")["profiles"] == ["demo"]
    for name in set(config["services"]) - {"simulator"}:
        assert not _service(config, name).get("profiles"), f"{name} must always run"


def test_worker_can_be_scaled(config: dict[str, Any]) -> None:
    worker = _service(config, "worker")
    assert "container_name" not in worker, "a fixed name allows one replica only"
    assert not worker.get("ports"), "a fixed host port allows one replica only"


def test_heatstream_environment_is_accepted_by_the_settings(
    config: dict[str, Any], test_secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in HEATSTREAM_SERVICES:
        for key in list(os.environ):
            if key.startswith("HEATSTREAM_"):
                monkeypatch.delenv(key)
        env = _service(config, name)["environment"]
        for key, value in env.items():
            monkeypatch.setenv(key, str(value))
        settings = load_settings()  # extra="forbid": a misspelt variable fails here
        assert settings.kafka.bootstrap == "kafka:9092"
        assert settings.influxdb.api == "v2"
        assert settings.influxdb.url == "http://influxdb:8086"
        assert settings.influxdb.token is not None
        assert settings.influxdb.token.get_secret_value() == test_secrets["INFLUXDB_ADMIN_TOKEN"]
        assert (settings.influxdb.database, settings.influxdb.retention_policy) == (
            "heatstream",
            "autogen",
        )


# --- secrets -------------------------------------------------------------------------


def test_the_secrets_are_the_admin_passwords_and_token() -> None:
    assert {"INFLUXDB_ADMIN_PASSWORD", "INFLUXDB_ADMIN_TOKEN", "GRAFANA_ADMIN_PASSWORD"} <= (
        REQUIRED_VARS
    )


def test_every_secret_in_the_environment_comes_from_the_env_file(
    config: dict[str, Any], test_secrets: dict[str, str]
) -> None:
    from_env_file = set(test_secrets.values())
    seen: set[str] = set()
    for name, service in config["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key) and value not in (None, ""):
                assert value in from_env_file, f"{name}: {key} is not taken from the env file"
                seen.add(value)
            assert PLACEHOLDER not in str(value).lower(), f"{name}: {key} has a placeholder"
    assert seen == from_env_file, "a required secret is used by no service"


@pytest.mark.parametrize("missing", sorted(REQUIRED_VARS))
@pytest.mark.parametrize("how", ["unset", "empty"])
def test_a_missing_secret_stops_compose_with_its_name(
    missing: str, how: str, tmp_path: Path, example_env: dict[str, str]
) -> None:
    values = dict(example_env)
    if how == "unset":
        del values[missing]
    else:
        values[missing] = ""
    result = _compose_config(_write_env_file(tmp_path / ".env", values))
    assert result.returncode != 0, f"docker-compose config accepted a config without {missing}"
    assert missing in result.stderr, result.stderr


# --- .env.example, Dockerfile --------------------------------------------------------


def test_env_example_documents_every_variable(example_env: dict[str, str]) -> None:
    assert set(example_env) == REFERENCED_VARS, "variables of docker-compose.yml vs .env.example"
    lines = ENV_EXAMPLE.read_text().splitlines()
    for index, line in enumerate(lines):
        if not line or line.startswith("#"):
            continue
        key = line.partition("=")[0]
        above = index - 1
        while above >= 0 and not lines[above].startswith("#") and lines[above].strip():
            above -= 1  # a group of related variables may share one comment
        assert above >= 0 and lines[above].startswith("#"), f"{key} has no comment"


def test_env_example_marks_exactly_the_secrets_as_change_me(example_env: dict[str, str]) -> None:
    placeholders = {key for key, value in example_env.items() if PLACEHOLDER in value.lower()}
    assert placeholders == REQUIRED_VARS
    text = ENV_EXAMPLE.read_text()
    for name in REQUIRED_VARS:
        comment = text.partition(f"\n{name}=")[0].rstrip().rpartition("\n")[2]
        assert "change me" in comment.lower(), f"{name}: its comment must say 'change me'"


def test_image_build_keeps_secrets_out() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    assert ".env" in ignored, ".env must never be sent to the image build"
    dockerfile = DOCKERFILE.read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert "pip install ." in dockerfile
    assert not re.search(r"^\s*(ENV|ARG)\s+\S*(PASSWORD|TOKEN|SECRET)", dockerfile, re.M)


def test_image_ships_the_water_table_it_computed_at_build() -> None:
    # Both stages name the same cache directory under the copied virtualenv, and the
    # build stage fills it, so no container pays ~1 s of IAPWS-95 at start.
    from heatstream.streams.water import CACHE_DIR_ENV

    dockerfile = DOCKERFILE.read_text()
    build, _, runtime = dockerfile.partition("\nFROM python:3.11-slim\n")
    setting = f"{CACHE_DIR_ENV}=/opt/heatstream/cache"
    assert setting in build and setting in runtime
    assert build.index(setting) < build.index("density_kg_m3(")
    assert "COPY --from=build /opt/heatstream /opt/heatstream" in runtime
