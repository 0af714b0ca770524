"""How a rule script runs (core.rule_runner): user errors and bugs end the job with one message, a rule process ends
without the interpreter's teardown, and model-stage scripts that hold no GPU slot run with every GPU hidden, so that on
a workstation they never share the GPU that profiles/local gives a training job alone."""

import os
import subprocess
import sys
import textwrap

import pytest
from snakemake.iocontainers import Namedlist

from conftest import REPO
from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.rule_runner import run_rule
from leukemia_dtl.evaluate import result_files
from leukemia_dtl.model import export
from rule_scripts import run_rule_script


def record_visible_gpus(seen: dict):
    def stand_in(*arguments, **keywords):
        seen["CUDA_VISIBLE_DEVICES"] = os.environ.get("CUDA_VISIBLE_DEVICES")
        # The job's first call into the package: what it would do next needs real files.
        raise UserError("stopped after its first call")

    return stand_in


@pytest.mark.parametrize(
    ("script", "module", "function", "inputs", "outputs"),
    [
        (
            "plot_gradcam.py",
            result_files,
            "read_predictions",
            {"model": "m.keras", "predictions": "p.tsv", "cache_images": "c/images.npy", "cache_index": "c/index.tsv"},
            {"png": "g.png", "pdf": "g.pdf"},
        ),
        (
            "export_model.py",
            export,
            "export_run",
            {"model": "m.keras", "split": "s.tsv", "cache_images": "c/images.npy", "cache_index": "c/index.tsv"},
            {"saved_model": "saved", "onnx": "m.onnx", "check": "check.json"},
        ),
    ],
)
def test_grad_cam_and_export_jobs_see_no_gpu(monkeypatch, script, module, function, inputs, outputs):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # a workstation's GPU, restored after the test
    seen = {}
    monkeypatch.setattr(module, function, record_visible_gpus(seen))
    params = {"cells_per_outcome": 2, "seed": 0, "title": "t", "threshold": 0.5}
    with pytest.raises(SystemExit):
        run_rule_script(script, input=inputs, output=outputs, params=params)
    assert seen == {"CUDA_VISIBLE_DEVICES": ""}


def rule_job(tmp_path):
    """The parts of Snakemake's ``snakemake`` object that run_rule reads: the log, the params."""

    class Job:
        log = Namedlist([str(tmp_path / "rule.log")])
        params = Namedlist(fromdict={})

    return Job


def test_a_user_error_ends_the_job_with_its_message_alone(tmp_path):
    def main(snakemake):
        raise UserError("data.archive is not set: name the zip")

    with pytest.raises(SystemExit) as stop:
        run_rule(rule_job(tmp_path), main)
    assert stop.value.code == 1
    log = (tmp_path / "rule.log").read_text()
    assert "ERROR data.archive is not set: name the zip" in log and "Traceback" not in log


def test_a_bug_ends_the_job_with_its_traceback(tmp_path):
    def main(snakemake):
        return {}["missing"]

    with pytest.raises(SystemExit):
        run_rule(rule_job(tmp_path), main)
    log = (tmp_path / "rule.log").read_text()
    assert "unexpected error" in log and "Traceback" in log and "KeyError: 'missing'" in log


@pytest.mark.parametrize(("outcome", "status"), [("done", 0), ("user_error", 1), ("bug", 1)])
def test_a_rule_process_ends_with_its_status_and_a_complete_log(tmp_path, outcome, status):
    """Run as Snakemake runs a rule script (its own process, the script as ``__main__``), the process ends without
    the interpreter's teardown: with the job's status, its log and its printed lines all written, and no exit
    handler run."""
    script = tmp_path / "rule_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import atexit, logging
            from types import SimpleNamespace
            from snakemake.iocontainers import Namedlist
            from leukemia_dtl.core.errors import UserError
            from leukemia_dtl.core.rule_runner import run_rule

            atexit.register(print, "teardown ran")

            def main(snakemake):
                print("printed by the job", end="")
                logging.getLogger("leukemia_dtl").info("logged by the job")
                if {outcome!r} == "user_error":
                    raise UserError("fix the config")
                if {outcome!r} == "bug":
                    raise KeyError("missing")

            job = SimpleNamespace(log=Namedlist([{str(tmp_path / "rule.log")!r}]), params=Namedlist(fromdict={{}}))
            run_rule(job, main)
            print("after run_rule")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "scripts")},
    )
    assert result.returncode == status, result.stderr
    assert result.stdout == "printed by the job"
    log = (tmp_path / "rule.log").read_text()
    assert "INFO logged by the job" in log
    assert ("ERROR fix the config" in log) == (outcome == "user_error")
    assert ("KeyError: 'missing'" in log) == (outcome == "bug")
