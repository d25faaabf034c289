"""Every example the repository ships works as written.

Each filter configuration in envoy/, kong/, demo/, tests/scenarios/, README.md and the book
(docs/src/**/*.md) is accepted by the filter's own parser (the `event-hooks validate` command) and by the configuration's
JSON Schema (kong/event_hooks.meta.json, what Kong validates with); every Envoy YAML passes
`envoy --mode validate`, and so does the access logger of the Istio EnvoyFilter; every shipped
access logger's native filter is the one `event-hooks envoy-access-log-filter` generates from
its configuration; the Kong, Envoy and Istio files agree with each other; and a bad
configuration is refused by both checks, naming where.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import ENVOY, ROOT, WASM

WASM_FILTER = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
WASM_ACCESS_LOG = "type.googleapis.com/envoy.extensions.access_loggers.wasm.v3.WasmAccessLog"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"
META = ROOT / "kong" / "event_hooks.meta.json"
# Where examples live (tests/host and the e2e tests hold configurations made to fail).
EXAMPLE_DIRS = ["envoy", "kong", "demo", "tests/scenarios"]
# The documentation: the README, the front door, and the book's pages.
DOCS = ROOT / "docs" / "src"


# --- the tools ------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `event-hooks` command, built (or found up to date) by cargo."""
    result = subprocess.run(
        ["cargo", "build", "--quiet", "--bin", "event-hooks", "--message-format=json"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stderr
    for line in result.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message.get("executable") and message["target"]["name"] == "event-hooks":
            return Path(message["executable"])
    raise AssertionError("cargo built no event-hooks executable")


@pytest.fixture(scope="session")
def validator() -> jsonschema.Draft4Validator:
    meta = json.loads(META.read_text())
    assert set(meta) == {"config_schema"}, "Kong's filter metadata holds the schema under config_schema"
    jsonschema.Draft4Validator.check_schema(meta["config_schema"])
    return jsonschema.Draft4Validator(meta["config_schema"])


def validate(cli: Path, text: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    args = [str(cli), "validate"]
    for name, value in sorted(env.items()):
        args += ["--env", f"{name}={value}"]
    return subprocess.run([*args, "-"], input=text, capture_output=True, text=True, timeout=60)


def schema_errors(validator: jsonschema.Draft4Validator, document) -> list[str]:
    """Every error as `<path>: <message>`, with those under anyOf/oneOf branches."""
    def flatten(errors):
        for error in errors:
            yield f"{'/'.join(map(str, error.absolute_path)) or '$'}: {error.message}"
            yield from flatten(error.context)
    return list(flatten(validator.iter_errors(document)))


# --- finding the examples -------------------------------------------------------------------


@dataclass
class Example:
    where: str
    text: str  # the bytes the filter receives
    env: dict[str, str] = field(default_factory=dict)  # what the proxy gives the VM, where the example says


def repo_files(*suffixes: str) -> list[Path]:
    return sorted(path for folder in EXAMPLE_DIRS for path in (ROOT / folder).rglob("*") if path.is_file() and path.suffix in suffixes)


def walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def envoy_wasm_filters(document) -> list[dict]:
    """The `config` of every Envoy Wasm HTTP filter and Wasm access logger in a YAML document
    (bootstrap, snippet, Istio EnvoyFilter); a `config` the documentation elides (`{ ... }`) is none."""
    return [node["config"] for node in walk(document)
            if isinstance(node, dict) and node.get("@type") in (WASM_FILTER, WASM_ACCESS_LOG) and node["config"] != {"...": None}]


def access_log_entries(document) -> list[dict]:
    """Every access log entry of a YAML document that runs event_hooks as Envoy's Wasm access logger."""
    return [node for node in walk(document)
            if isinstance(node, dict) and isinstance(node.get("typed_config"), dict) and node["typed_config"].get("@type") == WASM_ACCESS_LOG]


def envoy_examples(document, where: str) -> list[Example]:
    examples = []
    for index, config in enumerate(envoy_wasm_filters(document)):
        configuration = config.get("configuration", {})
        assert configuration.get("@type") == STRING_VALUE, f"{where}: the filter's configuration is a StringValue"
        env = dict(config.get("vm_config", {}).get("environment_variables", {}).get("key_values", {}))
        examples.append(Example(f"{where} filter {index}", configuration["value"], env))
    return examples


def is_envoy_bootstrap(document) -> bool:
    return isinstance(document, dict) and ("static_resources" in document or "dynamic_resources" in document)


def kong_filter_configs(document) -> list:
    """Every event_hooks configuration of a Kong declarative file: filter chains and plugins."""
    configs = []
    for node in walk(document):
        if not isinstance(node, dict):
            continue
        for chain in node.get("filter_chains", []) or []:
            configs += [f["config"] for f in chain["filters"] if f["name"] == "event_hooks"]
        configs += [p["config"] for p in node.get("plugins", []) or [] if p["name"] == "event_hooks"]
    return configs


def markdown_files() -> list[Path]:
    """README.md and every page of the book."""
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


def markdown_blocks(language: str) -> list[tuple[str, str]]:
    """(`<file>:<line>`, text) of every ```<language> block of the documentation."""
    blocks = []
    for path in markdown_files():
        text = path.read_text()
        name = str(path.relative_to(ROOT))
        blocks += [(f"{name}:{text[: match.start()].count(chr(10)) + 1}", match.group(1))
                   for match in re.finditer(rf"```{language}\n(.*?)```", text, re.S)]
    return blocks


def wasm_plugin_example(document: dict, where: str) -> Example:
    env = {entry["name"]: entry["value"] for entry in document["spec"].get("vmConfig", {}).get("env", []) if "value" in entry}
    return Example(where, json.dumps(document["spec"]["pluginConfig"]), env)


def kong_examples(document: dict, where: str) -> list[Example]:
    return [Example(f"{where} config {number}", config if isinstance(config, str) else json.dumps(config))
            for number, config in enumerate(kong_filter_configs(document))]


def markdown_yaml_examples(where: str, block: str) -> list[Example]:
    """A documentation YAML block's configurations: an Istio WasmPlugin's, a Kong declarative
    file's, or those of the Envoy Wasm filters in a bootstrap or a snippet of one."""
    document = yaml.safe_load(block)
    if isinstance(document, dict) and document.get("kind") == "WasmPlugin":
        return [wasm_plugin_example(document, where)]
    if isinstance(document, dict) and "_format_version" in document:
        return kong_examples(document, where)
    return envoy_examples(document, where)


def markdown_json_example(where: str, block: str) -> Example | None:
    """A documentation JSON block as the filter configuration it shows: a whole configuration,
    a hook, a hook's `config` or the `delivery` settings (completed with what they need), or
    None for an illustration of event data (which has placeholders such as `...`)."""
    try:
        value = json.loads(block)
    except json.JSONDecodeError:
        try:
            value = json.loads("{" + block + "}")
        except json.JSONDecodeError:
            assert "..." in block or "<" in block, f"{where}: a JSON block that is neither a configuration nor marked as an illustration"
            return None
    if not isinstance(value, dict):
        return None
    if "hooks" in value:
        config = value
    elif "handler" in value:
        config = {"hooks": [value]}
    elif set(value) == {"config"}:
        handler = "webhook-custom" if "method" in value["config"] else "webhook"
        config = {"hooks": [{"source": "traffic", "handler": handler, "config": value["config"]}]}
    elif set(value) == {"delivery"}:
        config = {"hooks": [], "delivery": value["delivery"]}
    else:
        assert "source" in value and "event" in value, f"{where}: a JSON block that is neither a configuration nor event data"
        return None
    hooks = config["hooks"]
    if any(hook.get("source") in ("crud", "dao:crud") for hook in hooks):
        config.setdefault("crud", {"match": {"upstream.cluster": "kong_admin"}})
    dead_letter = config.get("delivery", {}).get("dead_letter")
    if dead_letter and not any(hook.get("name") == dead_letter for hook in hooks):
        hooks.append({"name": dead_letter, "source": "event_hooks", "handler": "log", "config": {}})
    return Example(where, json.dumps(config))


def all_examples() -> list[Example]:
    examples: list[Example] = []
    for path in repo_files(".yaml", ".yml"):
        where = str(path.relative_to(ROOT))
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            label = where if index == 0 else f"{where} document {index}"
            if is_envoy_bootstrap(document):
                examples += envoy_examples(document, label)
            elif isinstance(document, dict) and document.get("kind") == "WasmPlugin":
                examples.append(wasm_plugin_example(document, label))
            elif isinstance(document, dict) and document.get("kind") == "EnvoyFilter":
                examples += envoy_examples(document, label)
            elif isinstance(document, dict) and "_format_version" in document:
                examples += kong_examples(document, label)
    for path in repo_files(".json"):
        where = str(path.relative_to(ROOT))
        if path == META:
            continue
        document = json.loads(path.read_text())
        if path.parent.name == "scenarios":
            examples.append(Example(where, json.dumps(document["config"]), dict(document.get("env", {}))))
        elif isinstance(document, dict) and "hooks" in document:
            examples.append(Example(where, json.dumps(document)))
    for where, block in markdown_blocks("yaml"):
        examples += markdown_yaml_examples(where, block)
    for where, block in markdown_blocks("json"):
        example = markdown_json_example(where, block)
        if example:
            examples.append(example)
    return examples


EXAMPLES = all_examples()


def with_secrets(example: Example) -> dict[str, str]:
    """The example's environment, plus a value for every variable it names that the example
    leaves to the deployment (a whsec_ key where the hook signs with standard-webhooks)."""
    env = dict(example.env)
    for node in walk(json.loads(example.text)):
        if not isinstance(node, dict):
            continue
        standard = node.get("signature") == "standard-webhooks"
        value = "whsec_" + base64.b64encode(b"an example key").decode() if standard else "an-example-secret"
        names = [node.get("secret_env"), node.get("token_env"), *(node.get("secrets_env") or [])]
        for name in filter(None, names):
            env.setdefault(name, value)
    return env


# --- every example is valid ------------------------------------------------------------------


def from_docs(example: Example) -> bool:
    return example.where.startswith(("README.md:", "docs/"))


def test_the_examples_are_found():
    found = {example.where.split(" ")[0].split(":")[0] for example in EXAMPLES}
    assert {"README.md", "envoy/envoy.yaml", "envoy/istio-wasmplugin.yaml", "envoy/istio-envoyfilter-access-log.yaml",
            "kong/kong.yml", "kong/kong-3.4.yml", "kong/kong-plugins.yml"} <= found
    # The README's: a hook, and one example per host (Envoy, Kong, Istio).
    assert sum(example.where.startswith("README.md:") for example in EXAMPLES) >= 4
    # The book's: every page of a source, a handler or a host has at least one, and the
    # configuration, filter, controls, delivery and admin pages too.
    pages = {str(path.relative_to(ROOT)) for folder in ("sources", "handlers", "hosts") for path in (DOCS / folder).glob("*.md")}
    pages |= {f"docs/src/{name}.md" for name in ("configuration", "filter", "controls", "delivery", "admin")}
    assert len(pages) >= 17
    assert pages - found == set(), "pages without a configuration example"
    assert sum(example.where.startswith("docs/") for example in EXAMPLES) >= 30


def schema_keys(node) -> set[str]:
    """Every property name of the configuration's JSON Schema, at any depth."""
    keys = set()
    for child in walk(node):
        if isinstance(child, dict) and isinstance(child.get("properties"), dict):
            keys |= set(child["properties"])
    return keys


def test_every_configuration_key_has_an_example_in_the_docs():
    """Every key the configuration takes (the schema's property names: top-level keys, hook
    keys, handler keys, settings, filter operators) appears in an example the docs show."""
    keys = schema_keys(json.loads(META.read_text())["config_schema"])
    assert {"hooks", "delivery", "admin", "url", "payload_format", "max_operations", "cooldown_ms", "exists"} <= keys
    shown = set()
    for example in filter(from_docs, EXAMPLES):
        shown |= {key for node in walk(json.loads(example.text)) if isinstance(node, dict) for key in node}
    assert keys - shown == set(), "configuration keys without an example in README.md or docs/"


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.where for example in EXAMPLES])
def test_the_filter_accepts_the_example(cli, example):
    result = validate(cli, example.text, with_secrets(example))
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.fullmatch(r"ok: \d+ hooks?\n", result.stdout)


@pytest.mark.parametrize("example", EXAMPLES, ids=[example.where for example in EXAMPLES])
def test_the_schema_accepts_the_example(validator, example):
    assert schema_errors(validator, json.loads(example.text)) == []


def envoy_yamls() -> list[Path]:
    return [path for path in repo_files(".yaml", ".yml") if any(is_envoy_bootstrap(d) for d in yaml.safe_load_all(path.read_text()))]


@pytest.mark.parametrize("path", envoy_yamls(), ids=lambda path: str(path.relative_to(ROOT)))
def test_envoy_validates_the_yaml(path, demo_certs):
    assert WASM.exists(), "run `make build` first"
    relative = str(path.relative_to(ROOT))
    result = subprocess.run([str(ENVOY), "--mode", "validate", "-c", relative], cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"configuration '{relative}' OK" in output


def shipped_access_loggers() -> list[tuple[str, dict]]:
    """(file, access log entry) of every event_hooks access logger in envoy/."""
    found = []
    for path in repo_files(".yaml", ".yml"):
        if path.parent == ROOT / "envoy":
            for document in yaml.safe_load_all(path.read_text()):
                found += [(str(path.relative_to(ROOT)), entry) for entry in access_log_entries(document)]
    return found


def generated_filter(cli: Path, configuration: str) -> tuple[dict | None, str]:
    """What `event-hooks envoy-access-log-filter` prints for `configuration`: parsed, and as printed."""
    args = [str(cli), "envoy-access-log-filter"]
    for name, value in sorted(with_secrets(Example("", configuration)).items()):
        args += ["--env", f"{name}={value}"]
    printed = subprocess.run([*args, "-"], input=configuration, capture_output=True, text=True, timeout=60, check=True).stdout
    return yaml.safe_load(printed), printed


def test_every_shipped_access_logger_has_the_native_filter_its_hooks_give(cli):
    """The `filter:` of each shipped access logger is what the command generates from the
    configuration beside it: a hook changed without regenerating it fails here."""
    loggers = shipped_access_loggers()
    assert {where for where, _ in loggers} >= {"envoy/envoy.yaml", "envoy/istio-envoyfilter-access-log.yaml"}
    stale = []
    for where, entry in loggers:
        configuration = entry["typed_config"]["config"]["configuration"]["value"]
        generated, printed = generated_filter(cli, configuration)
        if generated != entry.get("filter"):
            stale.append(f"{where}: access logger {entry['name']}: its `filter:` is not what its configuration gives. "
                         f"Regenerate it (event-hooks envoy-access-log-filter HOOKS.json, HOOKS.json the access "
                         f"logger's configuration) and paste it under `filter:`:\n{printed}")
    assert stale == [], "\n".join(stale)
    # The check sees a change: the demo's hooks on another path give another filter.
    demo = next(entry for where, entry in loggers if where == "envoy/envoy.yaml")
    changed = demo["typed_config"]["config"]["configuration"]["value"].replace('"/orders"', '"/payments"')
    assert generated_filter(cli, changed)[0] != demo["filter"]


def test_every_shipped_wasm_filter_fails_open():
    configs = []
    for path in repo_files(".yaml", ".yml"):
        for document in yaml.safe_load_all(path.read_text()):
            configs += [(str(path.relative_to(ROOT)), config) for config in envoy_wasm_filters(document)]
            if isinstance(document, dict) and document.get("kind") == "WasmPlugin":
                assert document["spec"]["failStrategy"] == "FAIL_OPEN", path
    plugins = []
    for where, block in markdown_blocks("yaml"):
        document = yaml.safe_load(block)
        configs += [(where, config) for config in envoy_wasm_filters(document)]
        if isinstance(document, dict) and document.get("kind") == "WasmPlugin":
            plugins.append(where)
            assert document["spec"]["failStrategy"] == "FAIL_OPEN", where
    assert len(configs) >= 2 and plugins
    for where, config in configs:
        assert config.get("failure_policy") == "FAIL_OPEN", where


# --- the Kong, Envoy and Istio files fit together --------------------------------------------


def kong_conf() -> dict[str, str]:
    settings = {}
    for line in (ROOT / "kong" / "kong.conf").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            key, value = (part.strip() for part in line.split("=", 1))
            settings[key] = value
    return settings


def env_names(config_text: str) -> set[str]:
    """The environment variables a configuration reads."""
    return set(with_secrets(Example("", config_text)))


def test_kong_conf_gives_the_filter_what_it_needs():
    conf = kong_conf()
    assert conf["wasm"] == "on"
    # The filter's shared-data keys start with event_hooks/: the zone of that name holds them.
    assert "nginx_wasm_shm_kv_event_hooks" in conf
    # Every variable the Kong examples read reaches the nginx workers.
    needed = set()
    for example in EXAMPLES:
        if example.where.startswith("kong/"):
            needed |= env_names(example.text)
    assert needed == {"HOOK_SECRET"}
    assert set(conf["nginx_main_env"].split()) >= needed


def test_kong_compose_mounts_what_kong_conf_names():
    compose = yaml.safe_load((ROOT / "kong" / "docker-compose.yml").read_text())
    kong = compose["services"]["kong"]
    assert re.fullmatch(r"kong:3\.[4-9]", kong["image"]) or kong["image"].startswith("kong/kong-gateway:3.")
    mounts = dict(volume.rsplit(":", 1)[0].split(":", 1)[::-1] for volume in kong["volumes"])
    filters = kong_conf()["wasm_filters_path"]
    assert mounts[f"{filters}/event_hooks.wasm"] == "../target/wasm32-wasip1/release/event_hooks.wasm"
    assert mounts[f"{filters}/event_hooks.meta.json"] == "./event_hooks.meta.json"
    assert mounts["/etc/kong/kong.conf"] == "./kong.conf"
    declarative = kong["environment"]["KONG_DECLARATIVE_CONFIG"]
    assert (ROOT / "kong" / mounts[declarative]).exists()
    assert "HOOK_SECRET" in kong["environment"]
    receiver = compose["services"]["receiver"]
    assert "/demo/receiver.py" in receiver["command"]


def test_envoy_compose_runs_the_official_image_on_the_shipped_yaml():
    compose = yaml.safe_load((ROOT / "envoy" / "docker-compose.yml").read_text())
    envoy = compose["services"]["envoy"]
    assert envoy["image"] == "envoyproxy/envoy:v1.40.0"
    assert envoy["working_dir"] == "/src" and "..:/src:ro" in envoy["volumes"]
    config = envoy["command"][envoy["command"].index("-c") + 1]
    assert (ROOT / config).exists()
    # envoy.yaml's receiver is at 127.0.0.1: the receiver shares Envoy's network.
    assert envoy["network_mode"] == compose["services"]["receiver"]["network_mode"]


def test_the_istio_plugin_takes_its_secret_from_the_sidecar():
    plugin = yaml.safe_load((ROOT / "envoy" / "istio-wasmplugin.yaml").read_text())
    assert plugin["apiVersion"] == "extensions.istio.io/v1alpha1" and plugin["kind"] == "WasmPlugin"
    spec = plugin["spec"]
    assert spec["pluginName"] == "event_hooks"
    from_host = {entry["name"] for entry in spec["vmConfig"]["env"] if entry.get("valueFrom") == "HOST"}
    assert env_names(json.dumps(spec["pluginConfig"])) <= from_host
    assert all("value" not in entry for entry in spec["vmConfig"]["env"]), "no secret written in the manifest"


def test_the_istio_envoyfilter_is_the_one_the_istio_page_shows_and_takes_its_secret_from_the_sidecar():
    def readable(document: dict) -> dict:
        """The document with each filter configuration parsed: the page writes its JSON otherwise."""
        for node in walk(document):
            if isinstance(node, dict) and node.get("@type") == STRING_VALUE:
                node["value"] = json.loads(node["value"])
        return document

    text = (ROOT / "envoy" / "istio-envoyfilter-access-log.yaml").read_text()
    [shown] = [yaml.safe_load(block) for where, block in markdown_blocks("yaml")
               if where.startswith("docs/src/hosts/istio.md:") and "kind: EnvoyFilter" in block]
    assert readable(shown) == readable(yaml.safe_load(text))
    shipped = yaml.safe_load(text)
    assert shipped["apiVersion"] == "networking.istio.io/v1alpha3" and shipped["kind"] == "EnvoyFilter"
    [config] = envoy_wasm_filters(shipped)
    assert config["root_id"].endswith("access_log")
    vm_config = config["vm_config"]
    assert env_names(config["configuration"]["value"]) <= set(vm_config["environment_variables"]["host_env_keys"])
    assert "key_values" not in vm_config["environment_variables"], "no secret written in the manifest"


# --- bad configurations are refused, by both checks -------------------------------------------

BAD = [
    # (configuration, the filter's message starts with, the schema reports at)
    ({"hooks": [{"source": "traffic", "handler": "webhook", "config": {}}]},
     "hooks[0].config.url: missing required field", "hooks/0/config"),
    ({"hooks": [], "surprise": 1}, "surprise: unknown field", "$"),
    ({"hooks": [{"source": "traffic", "handler": "webhook", "config": {"url": "http://r/", "sekret": "x"}}]},
     "hooks[0].config.sekret: unknown field", "hooks/0/config"),
    ({"hooks": [{"source": "traffic", "event": "health", "handler": "log", "config": {}}]},
     'hooks[0].event: unknown event "health" of source traffic', "hooks/0/event"),
    ({"hooks": [{"source": "traffic", "handler": "log", "config": {}, "snooze": -1}]},
     "hooks[0].snooze: expected a whole number between 0 and 31536000", "hooks/0/snooze"),
    ({"hooks": [], "delivery": {"breaker": {"failures": 0}}},
     "delivery.breaker.failures: must be between 1 and 10000", "delivery/breaker/failures"),
    ({"hooks": [{"source": "traffic", "filter": {"response.status": {"greater": 500}}, "handler": "log", "config": {}}]},
     "hooks[0].filter.response.status.greater: unknown operator", "hooks/0/filter/response.status"),
    ({"hooks": [], "admin": {"token": "a", "token_env": "B"}}, "admin: set token or token_env, not both", "admin"),
]


@pytest.mark.parametrize("config,message,location", BAD, ids=[message.split(":")[0] for _, message, _ in BAD])
def test_a_bad_configuration_is_refused_by_both(cli, validator, config, message, location):
    result = validate(cli, json.dumps(config), {})
    assert result.returncode == 1
    assert any(line.startswith(message) for line in result.stdout.splitlines()), result.stdout
    errors = schema_errors(validator, config)
    assert any(error.startswith(f"{location}: ") for error in errors), errors


def test_kong_3_5_and_later_refuse_a_configuration_written_as_a_string(validator):
    # With event_hooks.meta.json, Kong validates `config` as JSON: a string is not an object.
    # (Kong 3.4 reads no meta.json and wants the string: kong-3.4.yml.)
    assert not validator.is_valid('{"hooks": []}')
