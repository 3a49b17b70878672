"""Charts of :mod:`export.insights`, as PNG files for the run's artifacts.

Drawn on matplotlib's Agg canvas directly (no pyplot): no display, no global backend state.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from export.insights import Insights, WordScore

POSITIVE_COLOUR = "#2a9d8f"
NEGATIVE_COLOUR = "#e76f51"


def _both(insights: Insights) -> list[tuple[WordScore, str]]:
    """Negative words (strongest at the bottom), then positive (strongest at the top)."""
    return [(s, NEGATIVE_COLOUR) for s in insights.negative] + [
        (s, POSITIVE_COLOUR) for s in reversed(insights.positive)
    ]


def _save(figure: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(figure)
    figure.tight_layout()
    figure.savefig(path, format="png", dpi=100)
    return path


def bar_chart(insights: Insights, path: Path) -> Path:
    """The mean weight of the strongest positive and negative words."""
    rows = _both(insights)
    figure = Figure(figsize=(7, 1.5 + 0.28 * max(len(rows), 1)))
    axes = figure.add_subplot()
    axes.barh(
        range(len(rows)),
        [s.mean for s, _ in rows],
        color=[colour for _, colour in rows],
    )
    axes.set_yticks(range(len(rows)), [f"{s.word} ({s.reviews})" for s, _ in rows])
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("mean weight per review (logits; > 0 towards positive)")
    axes.set_title(
        f"Strongest words over {insights.reviews} held-out reviews ({insights.method}; "
        f"in at least {insights.min_reviews} reviews)",
        fontsize=9,
    )
    return _save(figure, path)


def distribution_plot(insights: Insights, path: Path) -> Path:
    """How each top word's weight spreads over the reviews it occurs in (box per word)."""
    rows = _both(insights)
    figure = Figure(figsize=(7, 1.5 + 0.28 * max(len(rows), 1)))
    axes = figure.add_subplot()
    if rows:
        boxes = axes.boxplot(
            [list(s.weights) for s, _ in rows],
            orientation="horizontal",
            patch_artist=True,
            showfliers=False,
            tick_labels=[s.word for s, _ in rows],
        )
        for patch, (_, colour) in zip(boxes["boxes"], rows, strict=True):
            patch.set_facecolor(colour)
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set_xlabel("weight in each review it occurs in (logits)")
    axes.set_title(f"Spread of the top words' weights over {insights.reviews} reviews", fontsize=9)
    return _save(figure, path)
