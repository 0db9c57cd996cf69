"""What `evaluate` shows: figures of the expected size, the rank histogram in metrics.json, the comparison of
several runs, and report.html, self-contained and rendered by a real headless Chromium with every image loaded."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dyffusion.cli.main import main
from dyffusion.data.contract import DataError, figure_view
from dyffusion.evaluation.report import scores_table

MEMBERS, ROLLOUT = 3, 10
# Pixel sizes: fixed figure sizes at 120 dpi; the tiny run's 10 x 10 grid gives 4 rows of 7 square panels.
FIGURES = {"metrics_vs_lead_time.png": (1560, 456), "spread_skill.png": (624, 576), "rank_histogram.png": (768, 480),
           "forecast.png": (2010, 1344), "particle_mesh.png": (1632, 432)}
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


@pytest.fixture(scope="module")
def evaluation(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "eval"
    assert main(["evaluate", str(tiny_run), "--members", str(MEMBERS), "--rollout", str(ROLLOUT), "--out", str(out),
                 "--quiet"]) == 0
    return out


def test_evaluate_writes_the_figures_at_their_size(evaluation):
    for name, size in FIGURES.items():
        with Image.open(evaluation / name) as image:
            assert image.format == "PNG" and image.size == size, name
            image.verify()  # the whole file decodes: not cut short


def test_metrics_record_the_rank_histogram(evaluation):
    metrics = json.loads((evaluation / "metrics.json").read_text())
    counts = metrics["rank_histogram"]
    assert len(counts) == MEMBERS + 1 and min(counts) >= 0
    # Every point of the spring mesh is valid: 2 trajectories x 4 channels x 10 x 10 points, per lead time.
    assert sum(counts) == pytest.approx(2 * 4 * 10 * 10 * ROLLOUT)


def test_report_html_is_self_contained(evaluation):
    page = (evaluation / "report.html").read_text()
    sources = re.findall(r'<img src="([^"]*)"', page)
    assert len(sources) == len(FIGURES) and all(src.startswith("data:image/png;base64,") for src in sources)
    assert "http://" not in page and "https://" not in page and "<link" not in page  # nothing to fetch
    assert (evaluation / "report.md").read_text().count("![") == len(FIGURES)


def test_evaluate_compares_several_runs(tiny_run, spring_data, tmp_path):
    baseline = tmp_path / "dropout"
    assert main(["fit", str(spring_data), "--out", str(baseline), "--method", "dropout", "--horizon", "4",
                 "--max-epochs", "1", "--quiet", "--set", "data.time_stride=2", "--set", "trainer.batches_per_epoch=2",
                 "--set", "baseline.network={name: convnet, width: 8, kernel_sizes: [3, 3], dropout: 0.2}"]) == 0
    out = tmp_path / "compare"
    assert main(["evaluate", str(tiny_run), str(baseline), "--members", "2", "--rollout", "6", "--out", str(out),
                 "--quiet"]) == 0
    labels = [tiny_run.name, baseline.name]
    for label in labels:  # each run's own evaluation, on the same initial conditions and ensemble size
        metrics = json.loads((out / label / "metrics.json").read_text())
        assert metrics["members"] == 2 and metrics["lead_times"] == list(range(1, 7))
        assert metrics["initial_conditions"] == 2 and (out / label / "report.html").exists()
    for name in ("metrics_vs_lead_time.png", "spread_skill.png", "rank_histogram.png"):
        Image.open(out / name).verify()
    table = [line for line in (out / "report.md").read_text().splitlines() if line.startswith("| ")]
    assert table[0].startswith("| run | method | members | CRPS |")
    rows = {row.split(" | ")[0].strip("| "): row for row in table[1:3]}
    assert set(rows) == set(labels)
    crps = {label: json.loads((out / label / "metrics.json").read_text())["mean"]["crps"] for label in labels}
    best, other = sorted(labels, key=crps.get)
    assert f"**{crps[best]:.4g}**" in rows[best] and f"{crps[other]:.4g}" in rows[other]
    assert f"**{crps[other]:.4g}**" not in rows[other]


def test_evaluate_refuses_to_compare_without_out(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run), str(tiny_run), "--quiet"]) == 2
    assert "give --out DIR to compare several runs" in capsys.readouterr().err


def _browser() -> str:
    found = next((path for path in map(shutil.which, BROWSERS) if path), None)
    if found is None:
        pytest.skip(f"no Chromium found (looked for {', '.join(BROWSERS)} on PATH); `make test` installs Debian's "
                    f"chromium when apt-get can run as root")
    return found


# Runs after the page's load event, which waits for every image: counts those that decoded to real pixels.
COUNT_IMAGES = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.loaded = images.filter((img) => img.complete && img.naturalWidth > 0).length;
});
</script>"""


def _loaded_images(browser: str, page, tmp_path) -> tuple[int, int]:
    """(images, images loaded) of ``page`` as headless Chromium renders it."""
    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text().replace("</body>", COUNT_IMAGES + "</body>"))
    dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                          f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                          probe.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    found = re.search(r'data-images="(\d+)" data-loaded="(\d+)"', dom)
    assert found, dom[:500]
    return int(found[1]), int(found[2])


def test_report_html_renders_in_headless_chromium(evaluation, tmp_path):
    browser = _browser()
    # The probe itself: a page with a broken image must count it as not loaded.
    broken = tmp_path / "broken.html"
    broken.write_text('<html><body><img src="data:image/png;base64,AAAA"></body></html>')
    assert _loaded_images(browser, broken, tmp_path) == (1, 0)

    assert _loaded_images(browser, evaluation / "report.html", tmp_path) == (len(FIGURES), len(FIGURES))
    screenshot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,4000",
                    f"--screenshot={screenshot}", (evaluation / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    with Image.open(screenshot) as image:
        assert image.size == (1280, 4000)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10  # text and figures, not a blank page


def test_evaluate_refuses_runs_of_different_time_steps(tiny_run, tmp_path, capsys):
    other = shutil.copytree(tiny_run, tmp_path / "other", ignore=shutil.ignore_patterns("checkpoints", "logs"))
    spec = json.loads((other / "data.json").read_text())
    (other / "data.json").write_text(json.dumps({**spec, "time_stride": 1}))
    assert main(["evaluate", str(tiny_run), str(other), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert "runs of different time steps have different lead times" in capsys.readouterr().err


def test_figure_view_attributes_are_checked():
    channels = ["p_x", "p_y", "q_x", "q_y"]
    assert figure_view({}, channels, "data.nc") == (None, [])
    assert figure_view({"dyffusion_view": "particle_mesh", "dyffusion_view_channels": "q_x, q_y"}, channels,
                       "data.nc") == ("particle_mesh", ["q_x", "q_y"])
    with pytest.raises(DataError, match="dyffusion_view is 'mesh', not one of particle_mesh, flow_field"):
        figure_view({"dyffusion_view": "mesh"}, channels, "data.nc")
    with pytest.raises(DataError, match=r"needs dyffusion_view_channels naming two channels .* got \['u', 'v'\]"):
        figure_view({"dyffusion_view": "flow_field", "dyffusion_view_channels": "u,v"}, channels, "data.nc")


def test_scores_table_marks_the_best_value_of_each_column():
    def metrics(crps, ssr):
        scores = {"crps": crps, "crps_fair": crps, "mse": 1.0, "rmse": 1.0, "ssr": ssr, "ssr_corrected": ssr}
        return {"mean": scores, "method": "m", "members": 4, "sampling_seconds_per_initial_condition": 2.0}

    table = scores_table({"a": metrics(0.2, 0.5), "b": metrics(0.3, 1.3), "c": metrics(float("nan"), float("nan"))})
    column = {name: index for index, name in enumerate(table.header)}
    assert (0, column["CRPS"]) in table.best and (1, column["SSR"]) in table.best  # lowest; closest to 1
    assert {(row, column["MSE"]) for row in range(3)} <= table.best  # a tie marks all
    assert not any(row == 2 and c in (column["CRPS"], column["SSR"]) for row, c in table.best)  # NaN never wins
    assert "**0.2**" in table.markdown(Path(".")) and '<td class="best"><strong>1.3</strong></td>' in table.html()
    assert scores_table({"a": metrics(0.2, 0.5)}).best == set()  # one run: nothing to compare, nothing marked
