"""What produced a trained model: the code (git commit, modified tree), the config the rule received, the data
(the archive's sha256), the software (every installed distribution's version), the device, the Keras backend
and the Slurm job, written beside the model as ``provenance.json``.

Standard library only beyond core: the training job writes it, and the evaluation stage, which has neither
Keras nor TensorFlow, reads it for the model cards and the run overview. Whatever git says, the record is
written: a question git cannot answer leaves its fields null with the reason.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import re
import socket
import subprocess
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from leukemia_dtl.core.errors import UserError
from leukemia_dtl.core.fileio import read_json_fields, write_json

# A git that hangs (a network file system, a lock) must not hold up the training job for long.
GIT_TIMEOUT_SECONDS = 30
SHORT_COMMIT_LENGTH = 7
SHORT_DIGEST_LENGTH = 12
DIGEST_PREFIX = "sha256:"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# What the model cards and the run overview read from a record.
PROVENANCE_FIELDS = ("git", "config_digest", "archive_sha256", "packages", "device", "keras_backend", "slurm")


def canonical_params(params) -> object:
    """``params`` as JSON types: mappings with string keys, lists, and str() of anything JSON cannot hold."""
    if isinstance(params, Mapping):
        return {str(key): canonical_params(value) for key, value in params.items()}
    if isinstance(params, list | tuple):
        return [canonical_params(value) for value in params]
    if params is None or isinstance(params, bool | int | float | str):
        return params
    return str(params)


def config_digest(params: Mapping) -> str:
    """ "sha256:<hex>" of the canonical JSON of ``params``: equal for equal params, whatever their key order."""
    text = json.dumps(canonical_params(params), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return DIGEST_PREFIX + hashlib.sha256(text.encode()).hexdigest()


def installed_packages() -> dict[str, str]:
    """{distribution: version} of every distribution the running Python can import, sorted by name."""
    found = {}
    for distribution in importlib.metadata.distributions():
        name = distribution.metadata["Name"]
        # The first of two copies on sys.path is the one imported, as importlib.metadata.version answers.
        if name and name not in found:
            found[name] = distribution.version
    # In the order the JSON file keeps them (sort_keys).
    return dict(sorted(found.items()))


def normalized_distribution(name: str) -> str:
    """A distribution's name as PEP 503 compares them: "tensorflow_cpu" and "TensorFlow-CPU" are the same."""
    return re.sub(r"[-_.]+", "-", name).lower()


def package_version(packages: Mapping[str, str], *names: str) -> str | None:
    """The version of the first of ``names`` found in ``packages`` (a provenance record's), else None."""
    versions = {normalized_distribution(name): version for name, version in packages.items()}
    return next((versions[key] for key in map(normalized_distribution, names) if key in versions), None)


class GitUnanswered(Exception):
    """Why git could not say what a provenance record asks; recorded, never raised to the job."""


def _git(repository: str | os.PathLike, *arguments: str) -> str:
    """The output of a git command on ``repository``; GitUnanswered with the reason when it cannot run."""
    try:
        return subprocess.run(
            ["git", "-C", str(repository), *arguments],
            capture_output=True,
            text=True,
            check=True,
            timeout=GIT_TIMEOUT_SECONDS,
        ).stdout
    except FileNotFoundError:
        raise GitUnanswered("git is not installed") from None
    except OSError as error:
        raise GitUnanswered(f"git could not be run ({error})") from None
    except subprocess.TimeoutExpired:
        raise GitUnanswered(f"git did not answer within {GIT_TIMEOUT_SECONDS} s") from None
    except subprocess.CalledProcessError as error:
        reason = " ".join(error.stderr.split()) or f"git exited with status {error.returncode}"
        raise GitUnanswered(f"{repository}: {reason}") from None


def git_state(repository: str | os.PathLike) -> dict:
    """{commit, modified, error}: the full sha of HEAD, whether tracked files differ from it or untracked files
    that git does not ignore are present, and, where git could not answer, null with the reason in error."""
    state = {"commit": None, "modified": None, "error": None}
    try:
        state["commit"] = _git(repository, "rev-parse", "--verify", "HEAD").strip()
        state["modified"] = bool(_git(repository, "status", "--porcelain", "--untracked-files=normal").strip())
    except GitUnanswered as error:
        state["error"] = str(error)
    return state


def archive_sha256(checksum_file: str | os.PathLike) -> str:
    """The hex digest of a sha256sum-format file ("<hex>  <archive name>")."""
    remedy = "Delete it and rerun the workflow so that extract_archive writes it again."
    try:
        text = Path(checksum_file).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"Cannot read the archive checksum file {checksum_file} ({error}). {remedy}") from None
    fields = text.split()
    if not fields or not _SHA256_HEX.fullmatch(fields[0].lower()):
        raise UserError(
            f"The archive checksum file {checksum_file} does not start with a sha256 hex digest (it reads "
            f"{text[:80]!r}). {remedy}"
        )
    return fields[0].lower()


def run_provenance(
    *,
    rule_params: Mapping,
    archive_checksum_file: str | os.PathLike | None,
    device: str,
    keras_backend: str,
    slurm: Mapping,
    repository: str | os.PathLike,
) -> dict:
    """The provenance record of one job. ``archive_checksum_file`` is None when the data came from a directory
    (no archive); ``device``, ``keras_backend`` and ``slurm`` come from the caller, who has Keras."""
    config = canonical_params(rule_params)
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "packages": installed_packages(),
        "git": git_state(repository),
        "config_digest": config_digest(config),
        "config": config,
        "archive_sha256": None if archive_checksum_file is None else archive_sha256(archive_checksum_file),
        "device": device,
        "keras_backend": keras_backend,
        "slurm": dict(slurm),
    }


def write_run_provenance(path: str | os.PathLike, **fields) -> dict:
    """Write :func:`run_provenance` of ``fields`` to ``path`` atomically, and return it."""
    record = run_provenance(**fields)
    write_json(record, path)
    return record


def short_commit(git: Mapping) -> str:
    """A record's commit for a table: "1a2b3c4", "1a2b3c4 (modified)", or "unknown" when git could not say."""
    if not git.get("commit"):
        return "unknown"
    short = git["commit"][:SHORT_COMMIT_LENGTH]
    return f"{short} (modified)" if git.get("modified") else short


def short_digest(digest: str | None) -> str:
    """The first hex digits of a digest, with or without its "sha256:" prefix; "n/a" for None."""
    return digest.removeprefix(DIGEST_PREFIX)[:SHORT_DIGEST_LENGTH] if digest else "n/a"


def read_run_provenance(path: str | os.PathLike) -> dict:
    """A provenance.json as :func:`write_run_provenance` wrote it; UserError naming the file if a field is missing."""
    return read_json_fields(path, PROVENANCE_FIELDS, "the training step")
