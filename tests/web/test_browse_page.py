"""The browse page at `/` in a real headless Chromium (Selenium with Debian's chromium and
chromium-driver), on SQLite and PostgreSQL: type a search, read the rows, page, open a study,
see its thumbnails load, download a study and an instance. Each test keeps a screenshot in
test-artifacts/browse/.
"""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from pacs.model.retrieve_identifier import RetrieveRequest
from pacs.services.retrieve import find_instances
from tests.web.browse_support import (
    MARKUP_DESCRIPTION,
    STUDIES,
    populate_browse,
    require_browser,
    screenshot,
    start_browser,
    study_uid_of,
)
from tests.web.support import Faces, module_faces

faces = module_faces(populate_browse)
WAIT = 30  # seconds a page may take to answer: a bound, not a measurement
ALL_ACCESSIONS = sorted(spec.accession for spec in STUDIES)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """One headless Chromium for the module."""
    require_browser()
    driver = start_browser(tmp_path_factory.mktemp("downloads"))
    yield driver
    driver.quit()


class Page:
    """The browse page in the browser, with the waits its tests need."""

    def __init__(self, driver: Any, faces: Faces, name: str):
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver = driver
        self.faces = faces
        self.name = name
        self.wait = WebDriverWait(driver, WAIT)

    def open(self, address: str = "/") -> Page:
        """Load the page and wait for its first search to be answered."""
        self.driver.get(self.faces.web.url + address)
        self.wait.until(lambda d: d.execute_script(
            "return document.body.dataset.state === 'idle'"
            " && Number(document.body.dataset.searches || 0) > 0"))
        return self

    def css(self, selector: str) -> Any:
        """The first element matching `selector`."""
        return self.driver.find_element("css selector", selector)

    def all(self, selector: str) -> list[Any]:
        """Every element matching `selector`."""
        return list(self.driver.find_elements("css selector", selector))

    def searches(self) -> int:
        """How many searches the page has had answered."""
        return int(self.driver.execute_script("return document.body.dataset.searches") or 0)

    def answered_after(self, action: Callable[[], None]) -> None:
        """Do `action` (which starts a search) and wait until that search is answered."""
        before = self.searches()
        action()
        self.wait.until(lambda _d: self.searches() > before and self.driver.execute_script(
            "return document.body.dataset.state === 'idle'"))

    def type_and_search(self, **fields: str) -> None:
        """Type into the form's fields (by id suffix) and press Search."""
        for field, text in fields.items():
            box = self.css(f"#f-{field}")
            box.clear()
            box.send_keys(text)
        self.answered_after(lambda: self.css("#do-search").click())

    def accessions(self) -> list[str]:
        """The Accession column of the rows shown, sorted."""
        return sorted(row.find_elements("css selector", "td")[6].text
                      for row in self.all("#studies tbody tr"))

    def open_study(self, label: str) -> None:
        """Click a study's row and wait until every series card has settled."""
        uid = study_uid_of(label)
        self.css(f'#studies tbody tr[data-uid="{uid}"]').click()
        self.wait.until(lambda d: self.all("#series .card") and all(
            "loaded" in card.get_attribute("class") or "no-preview" in
            card.get_attribute("class") for card in self.all("#series .card")))

    def shot(self, what: str) -> Path:
        """Keep a screenshot of what the browser shows now."""
        return screenshot(self.driver, f"{what}-{self.name}")


@pytest.fixture
def page(browser: Any, faces: Faces, request: pytest.FixtureRequest) -> Page:
    """The browse page of this backend's server, opened fresh."""
    backend = re.sub(r"\W+", "-", request.node.callspec.id)
    return Page(browser, faces, backend).open()


def downloads_into(page: Page, folder: Path) -> Path:
    """Send the browser's downloads to `folder` from now on."""
    folder.mkdir(parents=True, exist_ok=True)
    page.driver.execute_cdp_cmd("Browser.setDownloadBehavior",
                                {"behavior": "allow", "downloadPath": str(folder)})
    return folder


def downloaded(page: Page, folder: Path, suffix: str) -> Path:
    """The file the browser finished saving into `folder` (Chromium renames it when done)."""
    page.wait.until(lambda _d: [p for p in folder.iterdir() if p.suffix == suffix])
    return next(p for p in folder.iterdir() if p.suffix == suffix)


def stored_files(faces: Faces, study: str, series: str = "") -> dict[str, str]:
    """SHA-256 of every stored file of a study (or series), by SOP Instance UID."""
    request = RetrieveRequest("SERIES" if series else "STUDY", study_uids=(study,),
                              series_uids=(series,) if series else ())
    records = find_instances(faces.services.index, request)
    return {r.sop_instance_uid: hashlib.sha256(
        faces.services.archive.absolute(r.file_path).read_bytes()).hexdigest()
        for r in records}


# PS3.18 10.6.1 (Search for studies): the page opens on the first page of every study.
def test_the_page_opens_on_a_list_of_the_studies(page: Page) -> None:
    assert page.accessions() == ALL_ACCESSIONS
    assert page.css("#summary").text == f"Studies 1–{len(STUDIES)}"
    page.shot("study-list")


# PS3.4 C.2.2.2.4, PS3.18 8.3.4: a name typed without wildcards matches names starting with it,
# case-insensitively (query.pn_case_insensitive), in any of the patient's studies.
def test_a_patient_name_lists_that_patients_studies(page: Page) -> None:
    page.type_and_search(name="smith")
    assert page.accessions() == ["A1001", "A1002", "A1003"]
    names = {row.find_elements("css selector", "td")[0].text
             for row in page.all("#studies tbody tr")}
    assert names == {"Smith, Anna", "Smith, Robert"}
    page.shot("search-by-name")


# PS3.4 C.2.2.2.1: Patient ID is single value matching.
def test_a_patient_id_lists_that_patients_studies(page: Page) -> None:
    page.type_and_search(id="SMI002")
    assert page.accessions() == ["A1003"]


# PS3.4 C.2.2.2.5: a study date range includes both ends.
def test_a_date_range_lists_the_studies_within_it(page: Page) -> None:
    page.type_and_search(**{"from": "03/15/2024", "to": "04/02/2024"})
    assert page.accessions() == ["A1001", "A1002", "A1004"]
    assert page.css("#f-from").get_attribute("value") == "2024-03-15"


# PS3.4 C.2.2.2.1 on a multi-valued key: Modalities in Study matches when any value matches.
def test_a_modality_lists_the_studies_holding_it(page: Page) -> None:
    from selenium.webdriver.support.ui import Select

    Select(page.css("#f-modality")).select_by_visible_text("SR")
    page.answered_after(lambda: page.css("#do-search").click())
    assert page.accessions() == ["A1001"]
    Select(page.css("#f-modality")).select_by_visible_text("MR")
    page.answered_after(lambda: page.css("#do-search").click())
    assert page.accessions() == ["A1002", "A1006"]


# PS3.4 C.2.2.2.1: Accession Number is single value matching.
def test_an_accession_number_lists_its_study(page: Page) -> None:
    page.type_and_search(accession="A1005")
    assert page.accessions() == ["A1005"]
    assert page.css("#studies tbody td").text == "Müller, Jürgen"


# PS3.18 8.3.4.4: limit and offset page through the matches; every study once, none twice.
def test_pages_walk_through_every_study_once(page: Page) -> None:
    page.open("/?size=3")
    seen = [page.accessions()]
    assert page.css("#summary").text == "Studies 1–3 · more on the next page"
    assert not page.css("#prev").is_enabled()
    while page.css("#next").is_enabled():
        page.answered_after(lambda: page.css("#next").click())
        seen.append(page.accessions())
    assert [len(shown) for shown in seen] == [3, 3, 2]
    assert sorted(a for shown in seen for a in shown) == ALL_ACCESSIONS
    assert page.css("#summary").text == "Studies 7–8"
    page.shot("last-page")
    page.answered_after(lambda: page.css("#prev").click())
    assert page.accessions() == seen[1]


# PS3.18 10.6.1 (Search for series), 10.4.1.1.8 (thumbnail): a study opens on its series,
# each with a thumbnail that loads; a series without pixel data says it has no preview.
def test_a_study_opens_on_its_series_with_thumbnails(page: Page) -> None:
    page.type_and_search(name="Smith^Anna")
    page.open_study("ANNA-CT")
    titles = [card.find_element("css selector", ".card-title").text
              for card in page.all("#series .card")]
    assert titles == ["CT · Series 1", "CT · Series 2", "CT · Series 3", "SR · Series 4"]
    loaded = page.driver.execute_script(
        "return [...document.querySelectorAll('#series .card img')]"
        ".map(i => i.complete && i.naturalWidth > 0)")
    assert loaded == [True, True, True, False]
    assert "no-preview" in page.all("#series .card")[3].get_attribute("class")
    assert page.css("#study-title").text == "Smith, Anna"
    page.shot("study")


# PS3.18 10.6.1 (Search for instances): a series lists its instances in order, each with a
# download.
def test_a_series_lists_its_instances(page: Page) -> None:
    page.type_and_search(accession="A1001")
    page.open_study("ANNA-CT")
    card = page.all("#series .card")[1]
    card.find_element("css selector", ".show-instances").click()
    page.wait.until(lambda _d: card.find_elements("css selector", ".instances tbody tr"))
    rows = card.find_elements("css selector", ".instances tbody tr")
    assert [row.find_element("css selector", "td").text for row in rows] == ["1", "2", "3", "4"]
    assert rows[0].find_elements("css selector", "td")[1].text == "CT image"
    assert rows[0].find_elements("css selector", "td")[2].text == "96 × 96"
    page.shot("instances")


# Back goes to the results the study was opened from, search still filled in.
def test_back_returns_to_the_same_results(page: Page) -> None:
    page.type_and_search(name="smith")
    page.open_study("ANNA-MR")
    page.css("#back").click()
    page.wait.until(lambda _d: page.css("#list").is_displayed())
    assert page.accessions() == ["A1001", "A1002", "A1003"]
    assert page.css("#f-name").get_attribute("value") == "smith"


# PS3.18 10.4.1.1.1 (the study's instance set) as one ZIP: every stored file, byte for byte.
def test_downloading_a_study_saves_a_zip_of_its_stored_files(
        page: Page, tmp_path: Path) -> None:
    folder = downloads_into(page, tmp_path / "study")
    page.type_and_search(accession="A1001")
    page.open_study("ANNA-CT")
    page.css("#study-zip").click()
    archive = downloaded(page, folder, ".zip")
    with zipfile.ZipFile(archive) as opened:
        assert opened.testzip() is None
        got = {}
        for info in opened.infolist():
            data = opened.read(info)
            got[_sop_instance_uid(data)] = hashlib.sha256(data).hexdigest()
        assert all(i.compress_type == zipfile.ZIP_STORED for i in opened.infolist())
    assert got == stored_files(page.faces, study_uid_of("ANNA-CT"))
    assert archive.name.startswith("Smith Anna 2024-03-15 CT Chest with contrast")


# PS3.18 10.4.1.1.3 (an instance) as the stored Part 10 file.
def test_downloading_an_instance_saves_its_stored_file(page: Page, tmp_path: Path) -> None:
    folder = downloads_into(page, tmp_path / "instance")
    page.type_and_search(accession="A1006")
    page.open_study("YUI-MR")
    card = page.css("#series .card")
    card.find_element("css selector", ".show-instances").click()
    page.wait.until(lambda _d: card.find_elements("css selector", ".instances tbody tr"))
    row = card.find_element("css selector", ".instances tbody tr")
    row.find_element("css selector", "a[download]").click()
    saved = downloaded(page, folder, ".dcm")
    uid = row.get_attribute("data-uid")
    assert saved.name == f"{uid}.dcm"
    stored = stored_files(page.faces, study_uid_of("YUI-MR"))
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == stored[uid]


# The page works offline from the internet: everything it loaded came from this server, and
# its Content Security Policy allows nothing else.
def test_the_page_loads_nothing_from_elsewhere(page: Page) -> None:
    page.type_and_search(accession="A1001")
    page.open_study("ANNA-CT")
    origins = page.driver.execute_script(
        "return performance.getEntriesByType('resource').map(e => new URL(e.name).origin)")
    assert origins and set(origins) == {page.faces.web.url}
    policy = httpx.get(page.faces.web.url + "/", timeout=WAIT).headers[
        "content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy


# Values from the archive are text: markup in a name or a description is shown as typed and
# never becomes an element or runs.
def test_values_are_shown_as_text_never_as_markup(page: Page) -> None:
    page.type_and_search(id="MRK001")
    cells = page.all("#studies tbody td")
    assert cells[0].text == "Markup, <b>Bold</b>"
    assert cells[4].text == MARKUP_DESCRIPTION
    assert page.all("#studies tbody b, #studies tbody img") == []
    assert page.driver.execute_script("return document.body.dataset.owned") is None
    page.shot("markup-as-text")


# PS3.18 8.6.3 / PS3.4 C.4.1.2.1: a search the server refuses (two values for the single-
# valued Accession Number) shows the server's reason instead of rows.
def test_a_refused_search_shows_the_servers_reason(page: Page) -> None:
    page.type_and_search(accession="A1001\\A1002")
    message = page.css("#message")
    assert message.is_displayed()
    assert message.text.startswith("Search failed: ") and "AccessionNumber" in message.text
    assert page.all("#studies tbody tr") == []
    page.shot("refused-search")


def _sop_instance_uid(data: bytes) -> str:
    import pydicom

    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).SOPInstanceUID)
