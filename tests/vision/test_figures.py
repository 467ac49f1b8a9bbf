"""Figure summaries on real matplotlib figures."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import numpy as np
import pytest

from minicpm.figures import figure_facts, last_figure, summarize_figure, trend


@pytest.fixture(autouse=True)
def _close_all():
    yield
    plt.close("all")


def test_line_plot_with_legend_labels_and_trend():
    x = np.arange(10)
    fig, ax = plt.subplots()
    ax.plot(x, 2 * x + 1, label="train")
    ax.plot(x, 20 - x, "--", label="loss")
    ax.set_title("Training")
    ax.set_xlabel("epoch")
    ax.set_ylabel("value")
    ax.legend()
    s = summarize_figure(fig)
    assert "Plot 'Training'" in s
    assert "x-axis: 'epoch'" in s and "y-axis: 'value'" in s
    assert "legend: train, loss" in s
    assert "line 'train': 10 points, x from 0 to 9; y min 1, max 19, mean 10; rising monotonically" in s
    assert "line 'loss'" in s and "falling monotonically" in s
    json.dumps(figure_facts(fig))  # plain data, for the server


def test_log_scale_and_limits():
    fig, ax = plt.subplots()
    ax.plot([1, 10, 100], [1, 100, 10000])
    ax.set_yscale("log")
    ax.set_xlim(0, 200)
    s = summarize_figure(fig)
    assert "y-axis: unlabelled" in s and "log scale" in s
    assert "x-axis: unlabelled, from 0 to 200" in s


def test_peak_and_oscillation_are_named():
    x = np.linspace(-3, 3, 61)
    assert "peaks at x=0" in trend(x, np.exp(-x**2))
    assert "oscillating" in trend(np.linspace(0, 20, 200), np.sin(np.linspace(0, 20, 200)))
    assert trend([1, 2, 3], [5, 5, 5]) == "flat"


def test_scatter_correlation_and_colour():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = -3 * x + rng.normal(scale=0.1, size=200)
    fig, ax = plt.subplots()
    ax.scatter(x, y, c=y, label="samples")
    s = summarize_figure(fig)
    assert "scatter 'samples': 200 points" in s
    assert "correlation -1.00" in s and "falling" in s
    assert "colour encodes values" in s


def test_bar_chart_names_categories():
    fig, ax = plt.subplots()
    ax.bar(["apples", "pears", "plums"], [3, 7, 5])
    s = summarize_figure(fig)
    assert "bar chart: 3 bars: apples=3, pears=7, plums=5" in s
    fig2, ax2 = plt.subplots()
    ax2.barh(["a", "b"], [1.5, 2.5])
    assert "horizontal bar chart: 2 bars: a=1.5, b=2.5" in summarize_figure(fig2)


def test_histogram_is_recognised():
    data = np.random.default_rng(1).normal(loc=5, size=1000)
    fig, ax = plt.subplots()
    ax.hist(data, bins=20)
    s = summarize_figure(fig)
    assert "histogram: 20 bins over" in s and "total 1000" in s
    facts = figure_facts(fig)["axes"][0]["artists"][0]
    assert abs(facts["mode_bin_center"] - 5) < 1.0


def test_imshow_with_colorbar():
    a = np.zeros((30, 40))
    a[7, 11] = 3.0
    fig, ax = plt.subplots()
    im = ax.imshow(a, cmap="viridis")
    fig.colorbar(im, label="intensity")
    s = summarize_figure(fig)
    assert "image 30×40, values min 0, max 3" in s
    assert "colormap viridis" in s and "largest value at row 7, column 11" in s
    assert "Colour bar: 'intensity'" in s
    assert "one plot" in s  # the colour bar is not counted as a subplot
    rgb = plt.figure()
    rgb.gca().imshow(np.zeros((4, 5, 3)))
    assert "image 4×5×3 (RGB colour)" in summarize_figure(rgb)


def test_subplots_grid_and_suptitle():
    fig, axs = plt.subplots(2, 2)
    fig.suptitle("Overview")
    axs[0, 0].plot([1, 2, 3], [3, 1, 2])
    axs[0, 1].scatter([1, 2, 3], [1, 2, 3])
    axs[1, 0].bar([1, 2], [3, 4])
    axs[1, 1].hist([1, 2, 2, 3, 3, 3])
    axs[1, 1].set_title("counts")
    s = summarize_figure(fig)
    assert "4 subplots in a 2×2 grid, titled 'Overview'" in s
    assert "Subplot 4 'counts'" in s
    for kind in ("line:", "scatter:", "bar chart:", "histogram:"):
        assert kind in s


def test_empty_figure_and_axes_input():
    fig, ax = plt.subplots()
    s = summarize_figure(ax)
    assert "(empty: nothing drawn)" in s
    assert "with no axes" in summarize_figure(plt.figure())


def test_many_series_are_capped():
    fig, ax = plt.subplots()
    for i in range(20):
        ax.plot([0, 1], [i, i + 1])
    s = summarize_figure(fig, max_series=5)
    assert s.count("- line") == 5 and "and 15 more artists" in s


def test_nan_and_masked_data():
    fig, ax = plt.subplots()
    ax.plot([0, 1, 2, 3], [1.0, np.nan, 3.0, np.inf])
    ax.plot(np.ma.masked_array([1, 2, 3], mask=[0, 1, 0]))
    s = summarize_figure(fig)
    assert "min 1, max 3" in s


def test_errorbar_fill_and_annotations():
    fig, ax = plt.subplots()
    ax.errorbar([1, 2, 3], [2, 4, 6], yerr=0.5, label="measured")
    ax.fill_between([1, 2, 3], [1, 2, 3], [2, 3, 4], alpha=0.2, label="band")
    ax.annotate("max", (3, 6))
    s = summarize_figure(fig)
    assert "errorbar 'measured': 3 points" in s
    assert "filled area 'band'" in s
    assert "text on the plot: 'max'" in s


def test_last_figure():
    plt.close("all")
    assert last_figure() is None
    assert summarize_figure() == "No matplotlib figure is open."
    fig = plt.figure()
    assert last_figure() is fig
