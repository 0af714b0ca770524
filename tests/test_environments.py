"""The conda environments (snakemake --sdm conda on a cluster) hold what each rule's code imports, pin what
requirements.txt pins, and the data and evaluation code runs without Keras."""

import ast
import importlib.metadata
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from code_imports import imported_modules, third_party_imports
from conftest import REPO

PACKAGE = REPO / "scripts" / "leukemia_dtl"
# conda-forge names of packages that PyPI names differently (the CPU build stands in for TensorFlow here).
PYPI_NAME = {"tensorflow": "tensorflow-cpu"}
# Imported only when the user picks another Keras backend (KERAS_BACKEND=jax|torch); the env holds
# TensorFlow, the default.
OTHER_BACKENDS = {"jax", "torch"}
# In an env although no code of ours imports them.
NOT_IMPORTED = {
    "python": "the interpreter",
    "pip": "installs the pip: section",
    "h5py": "Keras reads the ImageNet .h5 weight files with it",
    "tensorboard": "Keras's TensorBoard callback writes its logs with it (logging.tensorboard)",
    "git": "core/provenance.py runs it to record the workflow's commit",
}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def rule_environments() -> dict[str, tuple[str, str]]:
    """{rule: (env file, script file)} of every rule with both a `conda:` and a `script:` directive."""
    rules = {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        for block in re.split(r"^rule ", smk.read_text(), flags=re.MULTILINE)[1:]:
            name = block.split(":", 1)[0]
            conda = re.search(r'^    conda:\n        "\.\./(envs/[\w.]+)"', block, re.MULTILINE)
            script = re.search(r'^    script:\n        "\.\./(scripts/[\w.]+)"', block, re.MULTILINE)
            if conda and script:
                rules[name] = (conda[1], script[1])
    return rules


def distributions(modules: set[str]) -> set[str]:
    """The installed distributions that provide ``modules`` (normalised PyPI names)."""
    provided_by = importlib.metadata.packages_distributions()
    return {normalized(dist) for module in modules for dist in provided_by[module]}


def env_packages(env_file: Path) -> set[str]:
    """Normalised PyPI names of an env's conda and `pip:` dependencies."""
    conda, pip = env_spec(env_file)
    names = {normalized(re.split(r"[=<>\[ ]", spec, maxsplit=1)[0]) for spec in conda + pip}
    return {PYPI_NAME.get(name, name) for name in names}


RULE_ENVIRONMENTS = rule_environments()


def test_every_script_rule_is_checked():
    assert {"inventory", "train_model", "tune_model", "select_hyperparameters", "plot_rulegraph"} <= set(
        RULE_ENVIRONMENTS
    )


@pytest.mark.parametrize("rule", sorted(RULE_ENVIRONMENTS))
def test_rule_environment_holds_what_its_code_imports(rule):
    env, script = RULE_ENVIRONMENTS[rule]
    imports = third_party_imports(REPO / script) - OTHER_BACKENDS
    needed = distributions(imports)
    listed = env_packages(REPO / env)
    assert needed - listed == set(), f"{rule}: {env} lacks what {script} imports"


@pytest.mark.parametrize("env", sorted({env for env, _ in RULE_ENVIRONMENTS.values()}))
def test_environment_holds_nothing_its_rules_do_not_import(env):
    scripts = [REPO / script for rule_env, script in RULE_ENVIRONMENTS.values() if rule_env == env]
    needed = distributions(set().union(*map(third_party_imports, scripts)) - OTHER_BACKENDS)
    unused = env_packages(REPO / env) - needed - set(NOT_IMPORTED)
    assert unused == set(), f"{env} installs packages no rule running in it imports"


def test_the_import_walk_sees_function_level_imports_and_python_m():
    assert {"keras", "tensorflow", "yaml"} <= third_party_imports(REPO / "scripts" / "train_model.py")
    assert "sklearn" in third_party_imports(REPO / "scripts" / "tune_model.py")
    assert "snakemake" in third_party_imports(REPO / "scripts" / "plot_rulegraph.py")
    assert "kaggle" in third_party_imports(REPO / "scripts" / "download_kaggle.py")


def pins_in(lines) -> dict[str, str]:
    """{normalised name: version} of the ``name==version`` lines (extras such as [and-cuda] dropped)."""
    pins = {}
    for line in lines:
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[\w,-]+\])?==(\S+)$", line.strip())
        if match:
            pins[normalized(match[1])] = match[3]
    return pins


def requirement_lines(name: str) -> list[str]:
    return [line for line in (REPO / name).read_text().splitlines() if line and not line.startswith("#")]


def env_spec(env_file: Path) -> tuple[list[str], list[str]]:
    """An env file's conda dependencies and its pip: section."""
    conda, pip = [], []
    for dependency in yaml.safe_load(env_file.read_text())["dependencies"]:
        if isinstance(dependency, dict):
            pip += dependency["pip"]
        else:
            conda.append(dependency)
    return conda, pip


ENV_FILES = sorted((REPO / "envs").glob("*.yaml"))


def test_requirements_and_every_env_agree_on_every_pin():
    pins = pins_in(requirement_lines("requirements.txt"))
    gpu_lines = requirement_lines("requirements-gpu.txt")
    # The GPU venv: the same packages and versions, TensorFlow's CUDA build for the CPU build.
    cpu_lines = [line.replace("tensorflow[and-cuda]==", "tensorflow-cpu==") for line in gpu_lines]
    assert cpu_lines == requirement_lines("requirements.txt")
    assert "tensorflow[and-cuda]==" + pins["tensorflow-cpu"] in gpu_lines
    checked = 0
    for env in ENV_FILES:
        conda, pip = env_spec(env)
        assert yaml.safe_load(env.read_text())["channels"][0] == "conda-forge", env.name
        # conda provides Python and pip, and the model stage git for the training provenance's commit.
        expected = ["python=3.11", "pip", "git"] if env.name == "train.yaml" else ["python=3.11", "pip"]
        assert conda == expected, f"{env.name}: conda provides only {expected}"
        for name, version in pins_in(pip).items():
            pinned = PYPI_NAME.get(name, name)
            assert pinned in pins, f"{env.name}: {name} is not pinned in requirements.txt"
            assert version == pins[pinned], f"{env.name}: {name}=={version}, requirements.txt has {pins[pinned]}"
            checked += 1
        assert len(pins_in(pip)) == len(pip), f"{env.name}: every pip package is pinned with =="
    assert checked >= 15
    assert "tensorflow[and-cuda]==" + pins["tensorflow-cpu"] in env_spec(REPO / "envs" / "train.yaml")[1]


def resolve(requirements: list[str], tmp_path: Path) -> dict[str, str]:
    """What pip would install for ``requirements`` from the package registry: {name: version}."""
    report = tmp_path / "report.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--quiet",
            "--report",
            str(report),
            *requirements,
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    installs = json.loads(report.read_text())["install"]
    return {normalized(item["metadata"]["name"]): item["metadata"]["version"] for item in installs}


@pytest.mark.registry
@pytest.mark.parametrize("env", [env.name for env in ENV_FILES])
def test_each_environment_resolves_against_the_registry(env, tmp_path):
    _, pip = env_spec(REPO / "envs" / env)
    resolved = resolve(pip, tmp_path)
    for name, version in pins_in(pip).items():
        assert resolved[name] == version
    if env == "train.yaml":
        assert any(name.startswith("nvidia-cudnn") for name in resolved), "the CUDA build brings cuDNN"


@pytest.mark.registry
def test_the_gpu_venv_resolves_against_the_registry(tmp_path):
    lines = requirement_lines("requirements-gpu.txt")
    resolved = resolve(lines, tmp_path)
    assert resolved["tensorflow"] == pins_in(lines)["tensorflow"]
    assert "tensorflow-cpu" not in resolved and any(name.startswith("nvidia-cudnn") for name in resolved)


def test_every_rule_names_a_conda_environment_that_exists():
    for smk in (REPO / "rules").glob("*.smk"):
        for env in re.findall(r'conda:\s*\n\s*"\.\./(envs/[\w.]+)"', smk.read_text()):
            assert (REPO / env).is_file(), f"{smk.name} uses missing {env}"


KERAS_FREE = ["core", "data", "evaluate", "tuning.selection"]


def import_in_fresh_interpreter(modules: list[str], unimportable: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Import ``modules`` in a fresh interpreter in which the packages ``unimportable`` cannot be imported. It prints
    "imported N", then the sorted top-level names of every module then loaded."""
    child = textwrap.dedent(
        f"""
        import importlib, sys
        class Unimportable:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in {unimportable!r}:
                    raise ImportError(f"{{name}} is not installed in this environment")
        sys.meta_path.insert(0, Unimportable())
        sys.path.insert(0, {str(REPO / "scripts")!r})
        for module in {modules!r}:
            importlib.import_module(module)
        print("imported", len({modules!r}))
        print(sorted({{name.split(".")[0] for name in sys.modules}}))
        """
    )
    return subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)


def import_without_keras(modules: list[str]) -> subprocess.CompletedProcess:
    """Import ``modules`` in a fresh interpreter in which Keras and TensorFlow are not importable."""
    return import_in_fresh_interpreter(modules, unimportable=("keras", "tensorflow"))


def test_data_and_evaluation_code_imports_without_keras():
    """Every module of the subpackages that run outside the train env imports with Keras and TensorFlow
    made unimportable, as in envs/data.yaml and envs/evaluate.yaml."""
    modules = []
    for name in KERAS_FREE:
        path = PACKAGE / Path(*name.split("."))
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        modules += [
            ".".join(("leukemia_dtl", *f.relative_to(PACKAGE).with_suffix("").parts)).removesuffix(".__init__")
            for f in files
        ]
    assert len(modules) >= 20
    result = import_without_keras(modules)
    assert result.returncode == 0, result.stderr
    assert f"imported {len(modules)}" in result.stdout


# The package modules the Snakefile and rules/*.smk import, and libraries none of them may import: Snakemake imports
# them at each start (every dry-run, every Slurm job), where matplotlib alone took 0.4 s.
WORKFLOW_IMPORT = re.compile(r"^from (leukemia_dtl[\w.]*) import", re.MULTILINE)
NOT_AT_PARSE = ("matplotlib", "keras", "tensorflow", "jax", "torch", "sklearn", "scipy", "statsmodels")


def test_parsing_the_workflow_imports_no_plotting_statistics_or_model_library():
    sources = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
    modules = sorted({module for source in sources for module in WORKFLOW_IMPORT.findall(source.read_text())})
    assert "leukemia_dtl.evaluate.rulegraph" in modules
    result = import_in_fresh_interpreter(modules)
    assert result.returncode == 0, result.stderr
    loaded = set(ast.literal_eval(result.stdout.splitlines()[-1]))
    assert sorted(loaded & set(NOT_AT_PARSE)) == []


def test_model_code_does_need_keras():
    result = import_without_keras(["leukemia_dtl.model.classifiers"])
    assert result.returncode != 0 and "keras is not installed" in result.stderr


STATISTICS = ["result_files", "metrics", "delong", "calibration", "significance", "model_comparison"]
PRESENTATION = [
    "formatting",
    "table1",
    "table2",
    "leakage_table",
    "figure_style",
    "figures",
    "tuning_heatmap",
    "gradcam_figure",
    "rulegraph",
]


@pytest.mark.parametrize("module", STATISTICS)
def test_statistics_never_import_presentation(module):
    assert all((PACKAGE / "evaluate" / f"{name}.py").is_file() for name in PRESENTATION)
    imports = imported_modules(PACKAGE / "evaluate" / f"{module}.py")
    assert not {f"leukemia_dtl.evaluate.{name}" for name in PRESENTATION} & imports


# The stages in the order they build on each other: a module may import its own stage and those before it.
STAGE_ORDER = ["core", "data", "model", "tuning", "evaluate"]


def test_every_subpackage_is_a_stage_in_the_order():
    assert sorted(path.parent.name for path in PACKAGE.glob("*/__init__.py")) == sorted(STAGE_ORDER)


def later_stage_imports(path: Path, stage: str) -> set[str]:
    """The modules of a stage after ``stage`` that ``path`` imports, at any depth of its code."""
    later = [["leukemia_dtl", name] for name in STAGE_ORDER[STAGE_ORDER.index(stage) + 1 :]]
    return {module for module in imported_modules(path) if module.split(".")[:2] in later}


@pytest.mark.parametrize(
    "path",
    [path for stage in STAGE_ORDER for path in sorted((PACKAGE / stage).rglob("*.py"))],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_no_module_imports_a_later_stage(path):
    """core < data < model < tuning < evaluate. Tuning builds on the model stage (it trains heads), so training gets
    the tuned values from its rule script; the model stage computes Grad-CAM's maps and the evaluation stage draws
    them; so no two stages form a cycle."""
    assert later_stage_imports(path, path.relative_to(PACKAGE).parts[0]) == set()


def test_the_stage_check_sees_a_function_level_import_of_a_later_stage(tmp_path):
    drawn_in_the_model_stage = tmp_path / "gradcam.py"
    drawn_in_the_model_stage.write_text("def panel():\n    from leukemia_dtl.evaluate import figure_style\n")
    assert later_stage_imports(drawn_in_the_model_stage, "model") == {
        "leukemia_dtl.evaluate",
        "leukemia_dtl.evaluate.figure_style",
    }
    assert later_stage_imports(drawn_in_the_model_stage, "evaluate") == set()


@pytest.mark.parametrize("script", sorted((REPO / "scripts").glob("*.py")), ids=lambda path: path.name)
def test_every_name_a_rule_script_imports_exists(script):
    """Each import of a rule script, those inside main() included, runs: a name moved out of a module fails here,
    not in the workflow's job."""
    tree = ast.parse(script.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            exec(compile(ast.Module([node], type_ignores=[]), str(script), "exec"), {})
