"""``GET /`` in a real headless Chromium against the real app: the loop's state, the adapters
and their decisions, a failure's feedback and the pass@1 chart are on the page, and the
screenshot is a real picture (decoded in the browser: many colours, not blank)."""

from __future__ import annotations

import base64
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.api.app import create_app
from service.benchmarks.scoring import TaskScore
from service.store import benchmark_runs as runs
from service.store.db import Store
from service.store.models import AdapterRow, PromotionRow

PIXELS_JS = """async (src) => {
  const img = new Image(); img.src = src; await img.decode();
  const c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
  const g = c.getContext('2d'); g.drawImage(img, 0, 0);
  const d = g.getImageData(0, 0, c.width, c.height).data;
  const colours = new Set(); let dark = 0;
  for (let i = 0; i < d.length; i += 4) {
    colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
    if (d[i] + d[i + 1] + d[i + 2] < 200) dark++;
  }
  return {width: c.width, height: c.height, colours: colours.size, dark: dark / (d.length / 4)};
}"""


def seed(store: Store) -> None:
    """What a few rounds of the loop leave in the store: two adapters, their gate decisions,
    and HumanEval runs for the base model and each adapter."""
    with store.write() as session:
        session.add(AdapterRow(id="policy-v1", path="/adapters/policy-v1", base_model="tiny",
                               state="serving", metrics={"pass_at_1": 0.32}))
        session.flush()
        session.add(AdapterRow(id="policy-v2", path="/adapters/policy-v2", base_model="tiny",
                               parent_id="policy-v1", state="rejected"))
        session.flush()
        session.add(PromotionRow(adapter_id="policy-v1", decision="promote",
                                 reason="validation pass@1 0.320 > 0.250 + margin",
                                 metrics={"candidate_pass_at_1": 0.32, "serving_pass_at_1": 0.25}))
        session.add(PromotionRow(adapter_id="policy-v2", previous_adapter_id="policy-v1",
                                 decision="reject", reason="validation pass@1 0.300 < 0.320",
                                 metrics={"candidate_pass_at_1": 0.30, "serving_pass_at_1": 0.32}))
    for adapter, value in (("base", 0.12), ("policy-v1", 0.18), ("policy-v2", 0.16)):
        run = runs.create_run(store, benchmark="humaneval", adapter=adapter, n=1,
                                 temperature=0.2, ks=[1], task_limit=1, tasks_total=1, config={})
        runs.add_results(store, run.id, [TaskScore("humaneval/HumanEval/0", 1, 1,
                                                      {"pass@1": 1.0}, [])])
        runs.finish_run(store, run.id, {"pass@1": value})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, mbpp_path: Path, settings_maker: Any,
           live_server_class: Any) -> Iterator[Any]:
    app = create_app(settings_maker(tmp_path_factory.mktemp("data"), mbpp_path))
    with live_server_class(app) as live:
        seed(app.state.services.store)
        with httpx.Client(base_url=live.url, timeout=60) as client:  # a real failure, via the API
            answer = client.post("/v1/evaluate", json={
                "programs": ["def add(a, b):\n    return a - b\n"],
                "tests": ["assert add(1, 2) == 3"], "instruction": "Add two numbers."})
            assert answer.status_code == 200, answer.text
        yield live


def test_the_dashboard_shows_the_loop_lineage_failures_and_chart(server: Any, browser: Any,
                                                                 tmp_path: Path) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server.url + "/", wait_until="load")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    text = page.inner_text("body")
    assert errors == []
    assert "stopped" in text and "round" in text  # the loop's state
    for name in ("policy-v1", "policy-v2", "rejected", "promote", "reject"):
        assert name in text
    assert "validation pass@1 0.300 < 0.320" in text
    assert "Expected 3, got -1." in text  # the failure's feedback
    assert "humaneval" in text and "18.0%" in text  # HumanEval pass@1 of policy-v1
    assert page.locator("#chart circle").count() == 6  # 3 validation + 3 HumanEval points

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 40_000
    pixels = page.evaluate(PIXELS_JS, "data:image/png;base64," + base64.b64encode(png).decode())
    assert pixels["width"] == 1280 and pixels["height"] >= 1000
    assert pixels["colours"] > 200 and 0.005 < pixels["dark"] < 0.6  # drawn, not blank
    keep = os.environ.get("LETI_DASHBOARD_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)
    page.close()


def test_panels_whose_endpoints_answer_404_degrade_gracefully(server: Any, browser: Any) -> None:
    """A server without the loop (an older deployment) still gets a working page."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    for path in ("**/v1/loop", "**/v1/adapters"):
        page.route(path, lambda route: route.fulfill(status=404, content_type="application/json",
                                                     body='{"detail": "Not Found"}'))
    page.goto(server.url + "/", wait_until="load")
    page.wait_for_selector("body[data-ready='1']", timeout=30_000)
    text = page.inner_text("body")
    assert errors == []
    assert "the loop is not available on this server" in text
    assert "Expected 3, got -1." in text and "humaneval" in text  # the other panels still fill in
    assert page.locator("#chart circle").count() == 3  # HumanEval only
    page.close()
