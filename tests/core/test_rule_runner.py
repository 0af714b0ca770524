"""Rule scripts of the model stage that hold no GPU slot run with every GPU hidden, so that on a workstation they
never share the GPU that profiles/local gives a training job alone."""

import os

import pytest
from snakemake.iocontainers import Namedlist

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
