"""The deploy/ recipes: YAML parses, the commands they run exist, one image name throughout.

Docker is not needed: the checks read the files. Every ``dlmm`` command in a
recipe is parsed by dlmm's own argument parser (with the recipe's config file),
every ``dask`` command by the ``dask`` CLI's own (click) parser.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml

from dlmm import cli

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
YAML_FILES = sorted([*DEPLOY.rglob("*.yml"), *DEPLOY.rglob("*.yaml")])


def _load(path: Path) -> list:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _substitute(arg: str) -> str:
    """Compose ``${VAR:-default}`` -> default; ``$(VAR)``, ``${VAR}``, ``$VAR`` -> a value."""
    arg = re.sub(r"\$\{[A-Za-z_]\w*:-([^}]*)\}", r"\1", str(arg))
    arg = re.sub(r"\$\([A-Za-z_]\w*\)", "tcp://placeholder:8786", arg)
    return re.sub(r"\$\{?[A-Za-z_]\w*\}?", "placeholder", arg)


def _built_image() -> str:
    """The image name that deploy/README.md builds from deploy/Dockerfile."""
    text = (DEPLOY / "README.md").read_text()
    match = re.search(r"docker build -f deploy/Dockerfile -t (\S+) \.", text)
    assert match, "deploy/README.md must show `docker build -f deploy/Dockerfile -t NAME .`"
    return match.group(1)


def _containers(node):
    """Every container spec in a Kubernetes document (at any depth)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(node, list):
        for value in node:
            yield from _containers(value)


def _compose() -> dict:
    (doc,) = _load(DEPLOY / "compose" / "docker-compose.yml")
    return doc


def _kubernetes() -> list[tuple[Path, dict]]:
    return [(p, d) for p in sorted((DEPLOY / "kubernetes").glob("*.yaml")) for d in _load(p)]


def _k8s_config(tmp_path: Path) -> Path:
    (cm,) = [d for _, d in _kubernetes() if d["kind"] == "ConfigMap"
             and d["metadata"]["name"] == "dlmm-fit-config"]
    path = tmp_path / "fit.toml"
    path.write_text(cm["data"]["fit.toml"])
    return path


def check_dlmm(command: list[str], config: Path | None = None) -> dict:
    """Parse a ``dlmm ...`` command with dlmm's parser; for ``fit``, resolve its options."""
    assert command[0] == "dlmm", command
    args = [_substitute(a) for a in command[1:]]
    if config is not None and "--config" in args:
        args[args.index("--config") + 1] = str(config)
    try:
        parsed = cli.build_parser().parse_args(args)
    except SystemExit as exc:  # argparse: an unknown flag or a bad value
        pytest.fail(f"`dlmm {' '.join(args)}` does not parse (exit {exc.code})")
    if parsed.command == "fit":
        return cli.fit_options(parsed)
    return vars(parsed)


def check_dask(command: list[str]) -> None:
    """``dask <sub> ...``: the entry point exists and its click parser takes the flags."""
    assert command[0] == "dask", command
    (ep,) = [e for e in entry_points(group="dask_cli") if e.name == command[1]]
    ep.load().make_context(f"dask {command[1]}", [_substitute(a) for a in command[2:]])


def check_command(command: list[str], config: Path | None = None):
    if command[0] == "dlmm":
        return check_dlmm(command, config)
    if command[0] == "dask":
        return check_dask(command)
    pytest.fail(f"recipe runs an unknown program: {command}")


# -- YAML and image -------------------------------------------------------------------


def test_yaml_files_parse():
    assert {p.relative_to(DEPLOY).as_posix() for p in YAML_FILES} >= {
        "compose/docker-compose.yml", "kubernetes/daskcluster.yaml",
        "kubernetes/daskjob.yaml", "kubernetes/fit-job.yaml"}
    for path in YAML_FILES:
        assert _load(path), path


def test_dockerfile_installs_the_package_from_the_context():
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:\$\{PYTHON_VERSION\}-slim$", text, re.M)
    assert re.search(r"^ARG PYTHON_VERSION=3\.\d+$", text, re.M)
    for source in re.findall(r"^COPY (.+) /tmp/dlmm/?\S*$", text, re.M):
        for item in source.split():
            assert (REPO / item).exists(), f"Dockerfile copies {item}, not in the repository"
    assert re.search(r"pip install /tmp/dlmm", text)
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*"):][:4] == ["*", "!pyproject.toml", "!README.md", "!dlmm/"]


def test_compose_and_kubernetes_use_the_built_image():
    image = _built_image()
    assert image == "dlmm:latest"
    compose = _compose()
    services = compose["services"]
    assert {s["image"] for s in services.values()} == {image}
    k8s = [c["image"] for _, doc in _kubernetes() for c in _containers(doc)]
    assert len(k8s) >= 5 and set(k8s) == {image}


# -- commands -------------------------------------------------------------------------


def test_compose_commands_exist():
    compose = _compose()
    services = compose["services"]
    assert {"scheduler", "worker", "job"} <= set(services)
    for service in services.values():
        check_command(service["command"], DEPLOY / "compose" / "fit.toml")

    scheduler = services["scheduler"]["command"]
    port = scheduler[scheduler.index("--port") + 1]
    assert services["worker"]["command"][2] == f"tcp://scheduler:{port}"
    opts = check_dlmm(services["job"]["command"], DEPLOY / "compose" / "fit.toml")
    assert opts["scheduler"] == f"tcp://scheduler:{port}"
    assert opts["data"] == "/data" and opts["output"].startswith("/results/")
    assert opts["formula"] and opts["groups"]
    mounts = services["job"]["volumes"]
    assert any(m.endswith(":/data:ro") for m in mounts)
    assert "./fit.toml:/config/fit.toml:ro" in mounts
    assert set(services["job"]["depends_on"]) == {"scheduler", "worker"}
    sim = check_dlmm(services["simulate"]["command"])
    assert sim["command"] == "simulate"


def test_kubernetes_commands_exist(tmp_path):
    config = _k8s_config(tmp_path)
    kinds = {}
    for _, doc in _kubernetes():
        kinds.setdefault(doc["kind"], []).append(doc)
        for container in _containers(doc):
            check_command([*container.get("command", []), *container["args"]], config)
    assert {"DaskCluster", "DaskJob", "Job", "ConfigMap", "PersistentVolumeClaim"} <= set(kinds)

    (cluster,) = kinds["DaskCluster"]
    assert cluster["apiVersion"] == "kubernetes.dask.org/v1"
    name = cluster["metadata"]["name"]
    service = cluster["spec"]["scheduler"]["service"]
    assert service["selector"]["dask.org/cluster-name"] == name
    (job,) = kinds["Job"]
    (fit,) = job["spec"]["template"]["spec"]["containers"]
    opts = check_dlmm(fit["args"], config)
    port = next(p["port"] for p in service["ports"] if p["name"] == "tcp-comm")
    assert opts["scheduler"] == f"tcp://{name}-scheduler:{port}"  # the operator's Service
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"

    (daskjob,) = kinds["DaskJob"]
    assert daskjob["apiVersion"] == "kubernetes.dask.org/v1"
    runner = daskjob["spec"]["job"]["spec"]
    assert runner["restartPolicy"] == "Never"
    args = runner["containers"][0]["args"]
    assert args[:2] == ["dlmm", "fit"] and "$(DASK_SCHEDULER_ADDRESS)" in args
    selector = daskjob["spec"]["cluster"]["spec"]["scheduler"]["service"]["selector"]
    assert selector["dask.org/cluster-name"] == daskjob["metadata"]["name"]

    claims = {d["metadata"]["name"] for d in kinds["PersistentVolumeClaim"]}
    for _, doc in _kubernetes():
        for volume in _find(doc, "persistentVolumeClaim"):
            assert volume["claimName"] in claims


def _find(node, key):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            else:
                yield from _find(v, key)
    elif isinstance(node, list):
        for v in node:
            yield from _find(v, key)


def _slurm_module():
    spec = importlib.util.spec_from_file_location("fit_slurm", DEPLOY / "slurm" / "fit_slurm.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # dask_jobqueue is imported only in main()
    return module


def test_slurm_recipe_commands_exist():
    text = (DEPLOY / "slurm" / "dlmm-fit.sbatch").read_text()
    assert text.startswith("#!/bin/bash\n") and "#SBATCH --job-name=" in text
    joined = text.replace("\\\n", " ")
    (line,) = [ln for ln in joined.splitlines() if "fit_slurm.py" in ln
               and ln.strip().startswith("python")]
    words = shlex.split(line)
    script_args = words[words.index('$DLMM_DEPLOY/fit_slurm.py') + 1:]
    module = _slurm_module()
    parsed = module.build_parser().parse_args([_substitute(a) for a in script_args])
    assert parsed.jobs >= 1 and parsed.cores >= 1
    fit = module.dlmm_command(parsed)
    opts = check_dlmm(["dlmm", *fit], DEPLOY / "slurm" / "fit.toml")
    assert opts["formula"] and opts["scheduler"] is None  # fit_slurm.py adds it
    with pytest.raises(SystemExit, match="--scheduler is set by this script"):
        module.dlmm_command(module.build_parser().parse_args(
            ["--", "fit", "d", "--scheduler", "tcp://x:1"]))


def test_recipe_readmes_exist():
    for folder in ("compose", "kubernetes", "slurm"):
        text = (DEPLOY / folder / "README.md").read_text()
        assert "dlmm fit" in text or "dlmm-fit" in text
    index = (DEPLOY / "README.md").read_text()
    for folder in ("compose/", "kubernetes/", "slurm/"):
        assert f"({folder})" in index
