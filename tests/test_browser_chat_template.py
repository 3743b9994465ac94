"""A model in its own chat template on the page: the compare tab with EM German (TGI stand-in) beside the offline
model's GGUF in its template shows each pane's own raw prompt once the round is answered."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from components.vocabulary.messages import t
from tests.app_server import running_app
from tests.browser import browser_fixture
from tests.test_chat_template import extra_entry, offline_file

pytestmark = pytest.mark.slow

browser = browser_fixture()


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory, tgi_server: Any) -> Iterator[str]:
    extra = tmp_path_factory.mktemp("extra") / "my-models.yaml"
    extra.write_text(yaml.safe_dump(extra_entry(offline_file()), allow_unicode=True), encoding="utf-8")
    env = {"PLAYGROUND_EXTRA_MODELS": str(extra), "TGI_URL": tgi_server.url, "PLAYGROUND_LLAMA_THREADS": "1"}
    with running_app(env) as running:
        yield running.url


def choose(page: Any, elem_id: str, option: str) -> None:
    page.locator(f"#{elem_id} input").click()
    page.locator(f"#{elem_id} [role=option]", has_text=option).first.click()


def test_compare_shows_em_german_and_a_template_models_own_raw_prompts(app_url: str, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1500, "height": 1100}, locale="de-DE")
    try:
        page = context.new_page()
        page.set_default_timeout(60_000)
        page.goto(app_url + "/")
        page.get_by_role("tab", name=t("tab_compare", "de")).click()
        page.locator("#compare-input textarea").wait_for()
        choose(page, "compare-family-1", "EM German")
        time.sleep(0.5)  # the family's update of the variant and build pickers lands first
        choose(page, "compare-quant-1", "TGI")
        choose(page, "compare-family-2", "SmolLM2 (eigenes Chat-Template)")
        time.sleep(0.5)
        box = page.locator("#compare-input textarea")
        box.fill("Wie viel ist 3+3?")
        box.press("Enter")
        summary = page.locator("#compare-question summary", has_text=t("compare_raw_prompts", "de"))
        summary.wait_for()
        summary.click()
        shown = page.locator("#compare-question details").inner_text()
        assert "USER: Wie viel ist 3+3? ASSISTANT:" in shown  # EM German's own format
        assert "<|im_start|>user\nWie viel ist 3+3?<|im_end|>\n<|im_start|>assistant" in shown  # the model's template
        assert "Traceback" not in page.locator("body").inner_text()
    finally:
        context.close()
