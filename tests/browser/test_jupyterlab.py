"""The notebooks as a student meets them: JupyterLab in headless Chromium, driven by Playwright.

Run with `make test-browser` (it installs Debian's `chromium` and Playwright, then sets
NUWA_LAB_BROWSER=1); `make test` skips this module. It starts JupyterLab on 127.0.0.1 with a token
on a free port, in a temporary folder with its own settings, and stops it and its kernels at the
end, also when a check fails. Every request that leaves 127.0.0.1 is blocked and reported: the
notebooks must work offline.

- notebook 03 at PRESET="smoke" with INTERACTIVE=True: the explorer opens on the notebook's own
  settings, a still of that view sits above it, and changing three of its controls redraws the
  footprint and its key count;
- notebook 00 at PRESET="smoke": its animation is an animated PNG that plays by itself.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

if os.environ.get("NUWA_LAB_BROWSER") != "1":
    pytest.skip("needs Chromium and Playwright: run `make test-browser`", allow_module_level=True)

import nbformat  # noqa: E402
from papermill.iorw import load_notebook_node  # noqa: E402
from papermill.parameterize import parameterize_notebook  # noqa: E402
from PIL import Image  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("NUWA_LAB_CHROMIUM", "/usr/bin/chromium")
START_TIMEOUT_S = 300  # JupyterLab's start; generous for a busy machine
RUN_TIMEOUT_MS = 600_000  # a whole notebook at smoke
REDRAW_TIMEOUT_MS = 60_000  # one redraw of the explorer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_notebook(stem: str, folder: Path, **parameters) -> str:
    """notebooks/<stem>.ipynb with `parameters` injected as papermill would; returns its name."""
    nb = load_notebook_node(str(ROOT / "notebooks" / f"{stem}.ipynb"))  # as papermill reads it
    nb = parameterize_notebook(nb, parameters)
    nbformat.write(nb, folder / f"{stem}.ipynb")
    return f"{stem}.ipynb"


def processes_mentioning(text: str) -> list[int]:
    """Ids of this user's processes whose command line contains `text` (our temporary folder)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            pids.append(int(entry.name))
    return pids


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Iterator[dict]:
    """A JupyterLab server of our own: url, token and folder; stopped with its kernels after."""
    folder = tmp_path_factory.mktemp("lab")
    for name in ("runtime", "config", "workspaces", "runs"):
        (folder / name).mkdir()
    settings = folder / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)  # every cell in the page, so each can be found
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    port, token = free_port(), secrets.token_hex(16)
    env = dict(
        os.environ,
        JUPYTER_RUNTIME_DIR=str(folder / "runtime"),
        JUPYTER_CONFIG_DIR=str(folder / "config"),
        JUPYTERLAB_SETTINGS_DIR=str(folder / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(folder / "workspaces"),
        NUWA_LAB_ARTIFACTS=os.environ.get("NUWA_LAB_ARTIFACTS", str(ROOT / "data" / "artifacts")),
    )
    command = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
        f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={folder}", "--LabApp.expose_app_in_browser=True",
        f"--LabServerApp.workspaces_dir={folder / 'workspaces'}",
        "--LabApp.extension_manager=readonly",  # nothing asks PyPI for extensions
    ]  # fmt: skip
    if os.geteuid() == 0:  # a container or CI runs as root; JupyterLab refuses without this
        command.append("--allow-root")
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not start: {(folder / 'server.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(1)
        yield {"url": url, "token": token, "folder": folder}
    finally:
        stop_server(server, url, token, str(folder))
        log.close()


def stop_server(server: subprocess.Popen, url: str, token: str, folder: str) -> None:
    """Ask the server to shut down (it stops its kernels), then end whatever is left of ours."""
    try:
        request = urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST")
        urllib.request.urlopen(request, timeout=10).close()
    except OSError:
        pass
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
    for pid in processes_mentioning(folder):  # kernels run in their own sessions
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser, lab) -> Iterator[Page]:
    """A fresh page that may only talk to our server; requests elsewhere are blocked and listed."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    blocked: list[str] = []

    def offline(route):
        if route.request.url.startswith(lab["url"]):
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    page.set_default_timeout(REDRAW_TIMEOUT_MS)
    try:
        yield page
        assert not blocked, f"the page asked for outside resources: {blocked[:5]}"
    finally:
        context.close()


def run_notebook(page: Page, lab: dict, name: str) -> None:
    """Open `name` in JupyterLab, run all its cells and wait until every one has run."""
    page.goto(f"{lab['url']}/lab/tree/{name}?token={lab['token']}")
    page.wait_for_function(
        """name => {
            const app = window.jupyterapp;
            const panel = app && app.shell.currentWidget;
            return panel && panel.context && panel.context.path.endsWith(name)
                && panel.sessionContext.session && panel.sessionContext.session.kernel;
        }""",
        arg=name,
        timeout=RUN_TIMEOUT_MS,
    )
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    state = page.wait_for_function(
        """() => {
            const panel = window.jupyterapp.shell.currentWidget;
            const cells = panel.content.model.cells;
            for (let i = 0; i < cells.length; i++) {
                const cell = cells.get(i);
                if (cell.type !== 'code') continue;
                const error = cell.outputs.toJSON().find(o => o.output_type === 'error');
                if (error) return 'error in cell ' + i + ': ' + error.ename + ': ' + error.evalue;
                if (!cell.executionCount) return false;
            }
            return panel.sessionContext.session.kernel.status === 'idle' ? 'done' : false;
        }""",
        polling=500,
        timeout=RUN_TIMEOUT_MS,
    ).json_value()
    assert state == "done", state


def png_frames(src: str) -> int:
    """Frames of the PNG in a `data:image/png;base64,...` URI (1 for a still)."""
    assert src.startswith("data:image/png;base64,"), src[:40]
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    return getattr(image, "n_frames", 1)


def test_the_footprint_explorer_opens_on_the_notebook_settings_and_redraws(page, lab) -> None:
    name = write_notebook(
        "03_attention_3d",
        lab["folder"],
        PRESET="smoke",
        INTERACTIVE=True,
        RUN_DIR=str(lab["folder"] / "runs" / "03"),
    )
    run_notebook(page, lab, name)
    explorer = page.locator(".widget-interact")
    expect(explorer).to_have_count(1)
    explorer.scroll_into_view_if_needed()
    text = explorer.locator(".widget-output .jp-OutputArea-output pre")
    picture = explorer.locator(".widget-output img")
    expect(text).to_contain_text("attends")
    expect(picture).to_have_count(1)

    # the still above the widget is the explorer's first view, and it opens on the notebook's
    # settings: smoke's grid (2, 4, 4), extent (1, 1, 1), the query at the centre of the last frame
    first = text.inner_text().strip()
    assert first == "nearby, causal none: query (1, 2, 2) attends 18 of 32 keys", first
    cell = page.locator(".jp-CodeCell", has=explorer)
    outputs = cell.locator(".jp-OutputArea-output")
    expect(outputs.first.locator("img")).to_have_count(1)  # the still, outside the widget
    expect(cell).to_contain_text(first)
    controls = explorer.locator("select")
    assert controls.nth(0).input_value() == "nearby"
    assert controls.nth(1).input_value() == "none"

    def changed(before_text: str, before_picture: str) -> tuple[str, str]:
        expect(text).not_to_have_text(before_text, timeout=REDRAW_TIMEOUT_MS)
        expect(picture).to_have_count(1)
        after_picture = picture.get_attribute("src")
        assert after_picture != before_picture, "the footprint picture did not change"
        return text.inner_text().strip(), after_picture

    seen, src = first, picture.get_attribute("src")
    controls.nth(0).select_option("full")  # 1: the pattern
    seen, src = changed(seen, src)
    assert seen.endswith("attends 32 of 32 keys"), seen
    controls.nth(1).select_option("raster")  # 2: causality
    seen, src = changed(seen, src)
    assert seen.endswith("attends 27 of 32 keys"), seen  # raster index of (1, 2, 2) is 26
    query_w = explorer.locator(".widget-slider", has_text="query w").locator(".noUi-handle")
    query_w.focus()
    query_w.press("Home")  # 3: the query's column, to 0
    seen, src = changed(seen, src)
    assert seen == "full, causal raster: query (1, 2, 0) attends 25 of 32 keys", seen


def test_the_tour_animation_plays_by_itself(page, lab) -> None:
    name = write_notebook(
        "00_tour", lab["folder"], PRESET="smoke", RUN_DIR=str(lab["folder"] / "runs" / "00")
    )
    run_notebook(page, lab, name)
    images = page.locator(".jp-OutputArea-output img")
    sources = [images.nth(k).get_attribute("src") for k in range(images.count())]
    animated = [k for k, src in enumerate(sources) if png_frames(src) > 1]
    assert len(animated) == 1, f"{len(animated)} animated images among {len(sources)}"
    animation = images.nth(animated[0])
    animation.scroll_into_view_if_needed()
    expect(animation).to_be_visible()
    shots = set()
    for _ in range(12):  # 3 s at 4 frames a second: a playing animation shows several frames
        shots.add(hashlib.sha256(animation.screenshot()).hexdigest())
        page.wait_for_timeout(250)
    assert len(shots) > 1, "the animation shows the same picture for 3 seconds: it does not play"
