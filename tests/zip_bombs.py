"""A zip bomb for the archive tests: the unit test of the extraction and the extract rule's workflow test.

A helper module, not a test module: tests import it instead of each other.
"""

import zipfile
from pathlib import Path

from leukemia_dtl.core.vocabulary import DATASET_DIR


def write_zip_bomb(archive: Path) -> None:
    """20 MB of zeros behind a BMP header, deflated to about 20 KB: a thousandfold, as zip bombs expand."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        bomb.writestr(f"{DATASET_DIR}/training_data/fold_0/all/UID_1_1_1_all.bmp", b"BM" + b"\0" * 20_000_000)
    assert archive.stat().st_size < 50_000
