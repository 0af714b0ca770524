"""How every figure of the workflow looks and is written: print-readable text, a colour-blind-safe palette with
fixed colours for the paper's models, figures on their own canvas outside pyplot's global state, and PNG and
PDF files that the same results make byte for byte the same.

Its imports are matplotlib and core only, so the model stage's rule environment (envs/train.yaml, Grad-CAM's
panel) can draw with it as well as the evaluation stage's.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from leukemia_dtl.core.fileio import atomic_path
from leukemia_dtl.core.vocabulary import EFFICIENTNETB3, VGG19

# Print-readable text: nothing below 9 pt; TrueType fonts keep the PDF's text editable.
STYLE = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "pdf.fonttype": 42,
}
# Okabe & Ito's colour-blind-safe palette; the paper's models keep theirs whatever else is plotted.
OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
PAPER_MODEL_COLOURS = {VGG19: OKABE_ITO[0], EFFICIENTNETB3: OKABE_ITO[1]}


def styled(plot):
    """Build the figure under STYLE, so its text sizes hold wherever it is saved."""

    @functools.wraps(plot)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(STYLE):
            return plot(*args, **kwargs)

    return wrapper


def new_figure(**figure_options) -> Figure:
    """A figure of its own canvas, outside pyplot's global state."""
    figure = Figure(layout="constrained", **figure_options)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, png_path: str | os.PathLike, pdf_path: str | os.PathLike) -> None:
    """Write ``figure`` as a 300 dpi PNG and a PDF, each atomically."""
    with matplotlib.rc_context(STYLE):
        for path, file_format in ((png_path, "png"), (pdf_path, "pdf")):
            with atomic_path(path) as tmp:
                # No creation date in the PDF: the same results give the same file.
                metadata = {"CreationDate": None} if file_format == "pdf" else {}
                # bbox_inches="tight": constrained layout can clip titles above fixed-aspect axes.
                figure.savefig(
                    tmp, format=file_format, dpi=300, metadata=metadata, bbox_inches="tight", pad_inches=0.05
                )


def model_colours(models: Sequence[str]) -> dict[str, str]:
    """One colour per model: the paper's models fixed, others from the rest of the palette in order."""
    spare = itertools.cycle([colour for colour in OKABE_ITO if colour not in PAPER_MODEL_COLOURS.values()])
    return {model: PAPER_MODEL_COLOURS.get(model) or next(spare) for model in models}
