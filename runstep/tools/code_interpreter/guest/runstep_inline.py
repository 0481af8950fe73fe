"""Matplotlib backend inside the sandbox (``MPLBACKEND=module://runstep_inline``): Agg
rendering, and ``plt.show()`` hands every open figure to the runner as a PNG, then closes it,
like Jupyter's inline backend."""

import sys

from matplotlib.backend_bases import FigureManagerBase as FigureManager  # noqa: F401
from matplotlib.backends.backend_agg import FigureCanvasAgg as FigureCanvas  # noqa: F401


def show(*args: object, **kwargs: object) -> None:
    runner = sys.modules.get("_runstep_runner")
    if runner is not None:
        runner.collect_figures()
