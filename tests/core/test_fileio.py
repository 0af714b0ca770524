import hashlib
import os

import pytest

from leukemia_dtl.core.fileio import atomic_path, file_sha256, write_json


def test_atomic_outputs_get_the_usual_file_mode(tmp_path):
    mask = os.umask(0)
    os.umask(mask)
    write_json({"a": 1}, tmp_path / "out.json")
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_failure_leaves_neither_target_nor_temporary_file(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "out.tsv") as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_file_sha256_reads_in_blocks_to_the_same_digest(tmp_path):
    data = os.urandom(3 * (1 << 20) + 17)  # three whole 1 MiB blocks and a partial one
    (tmp_path / "archive.zip").write_bytes(data)
    assert file_sha256(tmp_path / "archive.zip") == hashlib.sha256(data).hexdigest()
