"""Figures as files and as TensorBoard images: matplotlib without a display (Agg), PNG bytes,
atomic writes. Shared by the EDA report, the confusion plots and the explanation figures."""

from __future__ import annotations

import io

DPI = 110


def pyplot():
    """matplotlib.pyplot on the Agg backend (files only; servers have no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig, dpi: int = DPI, tight: bool = True) -> bytes:
    """The figure as PNG bytes; closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None)
    pyplot().close(fig)
    return buf.getvalue()


def save_png(fig, path, dpi: int = DPI, tight: bool = True) -> bytes:
    """Write the figure as PNG atomically (temporary name, then rename); closes it and returns
    the PNG bytes (for TensorBoard)."""
    from pipelines.common.io import atomic_path

    data = png_bytes(fig, dpi, tight)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return data


def summary_image(name: str, png: bytes, step: int) -> None:
    """One PNG as a TensorBoard image summary, on the default summary writer."""
    import tensorflow as tf

    tf.summary.image(name, tf.image.decode_png(png)[None], step=step)
