"""The conda environments (snakemake --sdm conda on a cluster) pin what requirements.txt pins."""

import re

import yaml

from conftest import REPO

# conda-forge names of packages that PyPI names differently.
PYPI_NAME = {"tensorflow": "tensorflow-cpu"}


def requirement_pins():
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[match[1].lower()] = match[2]
    return pins


def test_every_conda_pin_agrees_with_requirements():
    pins = requirement_pins()
    checked = 0
    for env in sorted((REPO / "envs").glob("*.yaml")):
        spec = yaml.safe_load(env.read_text())
        assert spec["channels"][0] == "conda-forge", env.name
        for dependency in spec["dependencies"]:
            name, _, version = dependency.partition("=")
            if name == "python":
                continue
            pypi = PYPI_NAME.get(name, name)
            assert pypi in pins, f"{env.name}: {name} is not pinned in requirements.txt"
            assert version == pins[pypi], f"{env.name}: {name}={version}, requirements.txt has {pins[pypi]}"
            checked += 1
    assert checked >= 10


def test_every_rule_names_a_conda_environment_that_exists():
    for smk in (REPO / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[\w.]+)"', smk.read_text()):
            assert (REPO / env).is_file(), f"{smk.name} uses missing {env}"
