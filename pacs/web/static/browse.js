// minipacs study browser: searches with QIDO-RS, shows series thumbnails with WADO-RS and
// links the downloads (/download/...). Plain DOM, no framework, no build step; every value
// from the archive goes into the page as text, never as markup.
"use strict";

const ROOT = "/dicom-web";
const TAG = {
  PatientName: "00100010", PatientID: "00100020", PatientBirthDate: "00100030",
  PatientSex: "00100040", StudyDate: "00080020", StudyTime: "00080030",
  AccessionNumber: "00080050", StudyDescription: "00081030", ModalitiesInStudy: "00080061",
  ReferringPhysicianName: "00080090", StudyID: "00200010", StudyInstanceUID: "0020000D",
  NumberOfStudyRelatedSeries: "00201206", NumberOfStudyRelatedInstances: "00201208",
  SeriesInstanceUID: "0020000E", SeriesNumber: "00200011", Modality: "00080060",
  SeriesDescription: "0008103E", SeriesDate: "00080021", BodyPartExamined: "00180015",
  NumberOfSeriesRelatedInstances: "00201209", SOPInstanceUID: "00080018",
  SOPClassUID: "00080016", InstanceNumber: "00200013", Rows: "00280010", Columns: "00280011",
  NumberOfFrames: "00280008",
};
const SOP_CLASSES = {
  "1.2.840.10008.5.1.4.1.1.1": "CR image",
  "1.2.840.10008.5.1.4.1.1.1.1": "DX image",
  "1.2.840.10008.5.1.4.1.1.1.1.1": "DX image (processing)",
  "1.2.840.10008.5.1.4.1.1.1.2": "Mammography image",
  "1.2.840.10008.5.1.4.1.1.2": "CT image",
  "1.2.840.10008.5.1.4.1.1.2.1": "Enhanced CT image",
  "1.2.840.10008.5.1.4.1.1.3.1": "US multi-frame image",
  "1.2.840.10008.5.1.4.1.1.4": "MR image",
  "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR image",
  "1.2.840.10008.5.1.4.1.1.6.1": "US image",
  "1.2.840.10008.5.1.4.1.1.7": "Secondary capture",
  "1.2.840.10008.5.1.4.1.1.11.1": "Presentation state",
  "1.2.840.10008.5.1.4.1.1.12.1": "X-ray angiography",
  "1.2.840.10008.5.1.4.1.1.12.2": "X-ray fluoroscopy",
  "1.2.840.10008.5.1.4.1.1.20": "NM image",
  "1.2.840.10008.5.1.4.1.1.66.4": "Segmentation",
  "1.2.840.10008.5.1.4.1.1.77.1.6": "Slide microscopy",
  "1.2.840.10008.5.1.4.1.1.88.11": "Basic text SR",
  "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
  "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
  "1.2.840.10008.5.1.4.1.1.88.59": "Key object selection",
  "1.2.840.10008.5.1.4.1.1.104.1": "Encapsulated PDF",
  "1.2.840.10008.5.1.4.1.1.128": "PET image",
  "1.2.840.10008.5.1.4.1.1.481.1": "RT image",
  "1.2.840.10008.5.1.4.1.1.481.2": "RT dose",
  "1.2.840.10008.5.1.4.1.1.481.3": "RT structure set",
  "1.2.840.10008.5.1.4.1.1.481.5": "RT plan",
};
const INSTANCE_PAGE = 100;

const $ = (selector, root = document) => root.querySelector(selector);
const state = { page: 0, studies: [], sequence: 0, current: null, fromList: false,
  searched: null };

// --- DICOM JSON values -----------------------------------------------------------------------

function values(doc, keyword) {
  const element = doc[TAG[keyword]];
  return element && Array.isArray(element.Value) ? element.Value : [];
}

function value(doc, keyword) {
  const first = values(doc, keyword)[0];
  if (first === undefined || first === null) return "";
  if (typeof first === "object") return first.Alphabetic || "";
  return String(first);
}

function personName(text) {
  // PS3.5 6.2: family^given^middle^prefix^suffix, shown as "Family, Given Middle".
  const [family = "", given = "", middle = "", prefix = "", suffix = ""] = text.split("^");
  const rest = [prefix, given, middle].filter(Boolean).join(" ");
  const name = [family, rest].filter(Boolean).join(", ");
  return [name, suffix].filter(Boolean).join(" ") || "(no name)";
}

function dicomDate(text) {
  const match = /^(\d{4})(\d{2})(\d{2})$/.exec(text);
  return match ? `${match[1]}-${match[2]}-${match[3]}` : text;
}

function dicomTime(text) {
  const match = /^(\d{2})(\d{2})?/.exec(text);
  return match ? `${match[1]}:${match[2] || "00"}` : text;
}

function sexName(code) {
  return { M: "Male", F: "Female", O: "Other" }[code] || code;
}

// --- the search form -------------------------------------------------------------------------

function isoDay(offsetDays) {
  const day = new Date();
  day.setDate(day.getDate() - offsetDays);
  const pad = (n) => String(n).padStart(2, "0");
  return `${day.getFullYear()}-${pad(day.getMonth() + 1)}-${pad(day.getDate())}`;
}

function formFields() {
  const form = $("#search");
  return {
    PatientName: form.PatientName.value.trim(),
    PatientID: form.PatientID.value.trim(),
    AccessionNumber: form.AccessionNumber.value.trim(),
    from: form.from.value,
    to: form.to.value,
    ModalitiesInStudy: form.ModalitiesInStudy.value,
  };
}

function fillForm(params) {
  const form = $("#search");
  for (const name of ["PatientName", "PatientID", "AccessionNumber", "from", "to",
    "ModalitiesInStudy"]) {
    form[name].value = params.get(name) || "";
  }
  const size = parseInt(params.get("size") || "", 10);
  const select = $("#page-size");
  if (size >= 1 && size <= 500) {
    if (![...select.options].some((o) => o.value === String(size))) {
      select.add(new Option(String(size)));  // a size given in the address, e.g. ?size=3
    }
    select.value = String(size);
  }
  state.page = Math.max(0, parseInt(params.get("page") || "0", 10) || 0);
}

function qidoQuery(fields, size, page) {
  // The form's fields as QIDO-RS matching keys (PS3.18 8.3.4, PS3.4 C.2.2.2).
  const query = new URLSearchParams();
  let name = fields.PatientName.replace(/\s*,\s*/g, "^");
  if (name && !/[*?]/.test(name)) name += "*";
  if (name) query.set("PatientName", name);
  if (fields.PatientID) query.set("PatientID", fields.PatientID);
  if (fields.AccessionNumber) query.set("AccessionNumber", fields.AccessionNumber);
  const from = fields.from.replaceAll("-", "");
  const to = fields.to.replaceAll("-", "");
  if (from || to) query.set("StudyDate", from && from === to ? from : `${from}-${to}`);
  if (fields.ModalitiesInStudy) query.set("ModalitiesInStudy", fields.ModalitiesInStudy);
  query.set("limit", String(size + 1)); // one more than shown: is there a next page?
  query.set("offset", String(size * page));
  return query;
}

function pageAddress(fields, size, page) {
  const params = new URLSearchParams();
  for (const [name, text] of Object.entries(fields)) if (text) params.set(name, text);
  if (size !== 25) params.set("size", String(size));
  if (page) params.set("page", String(page));
  const search = params.toString();
  return search ? `?${search}` : location.pathname;
}

// --- talking to the server -------------------------------------------------------------------

async function getJSON(url) {
  const response = await fetch(url, { headers: { Accept: "application/dicom+json" } });
  if (!response.ok) {
    let reason = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && body.reason) reason = body.reason;
    } catch (ignored) { /* not JSON: keep the status line */ }
    throw new Error(reason);
  }
  return response.status === 204 ? [] : response.json();
}

function showMessage(text) {
  const box = $("#message");
  box.textContent = text;
  box.hidden = !text;
}

function setBusy(busy) {
  document.body.dataset.state = busy ? "loading" : "idle";
}

// --- the study list --------------------------------------------------------------------------

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.append(td);
  return td;
}

function downloadLink(href, text, label) {
  const link = document.createElement("a");
  link.href = href;
  link.textContent = text;
  link.className = "button small";
  link.setAttribute("download", "");
  link.setAttribute("aria-label", label);
  link.addEventListener("click", (event) => event.stopPropagation());
  return link;
}

function renderStudies(studies, size) {
  const body = $("#studies tbody");
  body.replaceChildren();
  for (const doc of studies.slice(0, size)) {
    const uid = value(doc, "StudyInstanceUID");
    const row = document.createElement("tr");
    row.tabIndex = 0;
    row.dataset.uid = uid;
    row.className = "study-row";
    cell(row, personName(value(doc, "PatientName")), "strong");
    cell(row, value(doc, "PatientID"), "mono");
    const born = [dicomDate(value(doc, "PatientBirthDate")), value(doc, "PatientSex")];
    cell(row, born.filter(Boolean).join(" · "), "nowrap");
    const date = cell(row, dicomDate(value(doc, "StudyDate")), "nowrap");
    const time = document.createElement("span");
    time.className = "sub";
    time.textContent = dicomTime(value(doc, "StudyTime"));
    date.append(time);
    cell(row, value(doc, "StudyDescription"), "wrap");
    const modalities = cell(row, "");
    for (const modality of values(doc, "ModalitiesInStudy")) {
      const tag = document.createElement("span");
      tag.className = "tag";
      tag.textContent = modality;
      modalities.append(tag);
    }
    cell(row, value(doc, "AccessionNumber"), "mono");
    cell(row, value(doc, "NumberOfStudyRelatedSeries"), "num");
    cell(row, value(doc, "NumberOfStudyRelatedInstances"), "num");
    const actions = cell(row, "", "act");
    actions.append(downloadLink(`/download/studies/${encodeURIComponent(uid)}`, "ZIP",
      `Download study of ${personName(value(doc, "PatientName"))} as ZIP`));
    row.addEventListener("click", () => openStudy(uid));
    row.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") {
        event.preventDefault();
        openStudy(uid);
      }
    });
    body.append(row);
  }
}

async function search(push) {
  const fields = formFields();
  const size = parseInt($("#page-size").value, 10);
  const page = state.page;
  const sequence = ++state.sequence;
  if (push !== undefined) {
    const address = pageAddress(fields, size, page);
    if (push) history.pushState(null, "", address);
    else history.replaceState(null, "", address);
  }
  state.searched = location.search;
  setBusy(true);
  $("#summary").textContent = "Searching…";
  $("#studies").setAttribute("aria-busy", "true");
  try {
    const studies = await getJSON(`${ROOT}/studies?${qidoQuery(fields, size, page)}`);
    if (sequence !== state.sequence) return; // a newer search answered first
    showMessage("");
    state.studies = studies;
    renderStudies(studies, size);
    const shown = Math.min(studies.length, size);
    $("#summary").textContent = shown === 0
      ? (page ? "No more studies" : "No study matches")
      : `Studies ${page * size + 1}–${page * size + shown}` +
        (studies.length > size ? " · more on the next page" : "");
    $("#prev").disabled = page === 0;
    $("#next").disabled = studies.length <= size;
  } catch (error) {
    if (sequence !== state.sequence) return;
    showMessage(`Search failed: ${error.message}`);
    $("#summary").textContent = "";
    $("#studies tbody").replaceChildren();
  } finally {
    if (sequence === state.sequence) {
      $("#studies").removeAttribute("aria-busy");
      document.body.dataset.searches = String(sequence); // searches answered, for tests
      setBusy(false);
    }
  }
}

// --- one study: its series, thumbnails and instances -----------------------------------------

function fact(list, term, text, className) {
  if (!text) return;
  const group = document.createElement("div");
  group.className = "fact";
  const dt = document.createElement("dt");
  dt.textContent = term;
  const dd = document.createElement("dd");
  dd.textContent = text;
  if (className) dd.className = className;
  group.append(dt, dd);
  list.append(group);
  return group;
}

function renderStudyHead(doc, uid) {
  $("#study-title").textContent = personName(value(doc, "PatientName"));
  const facts = $("#study-facts");
  facts.replaceChildren();
  fact(facts, "Patient ID", value(doc, "PatientID"), "mono");
  const birth = dicomDate(value(doc, "PatientBirthDate"));
  const sex = sexName(value(doc, "PatientSex"));
  fact(facts, "Born", [birth, sex].filter(Boolean).join(" · "));
  const when = [dicomDate(value(doc, "StudyDate")), dicomTime(value(doc, "StudyTime"))];
  fact(facts, "Study date", when.filter(Boolean).join(" "));
  fact(facts, "Description", value(doc, "StudyDescription"));
  fact(facts, "Accession", value(doc, "AccessionNumber"), "mono");
  fact(facts, "Referring", value(doc, "ReferringPhysicianName")
    ? personName(value(doc, "ReferringPhysicianName")) : "");
  fact(facts, "Modalities", values(doc, "ModalitiesInStudy").join(", "));
  const series = value(doc, "NumberOfStudyRelatedSeries");
  const images = value(doc, "NumberOfStudyRelatedInstances");
  if (series || images) fact(facts, "Contents", `${series} series, ${images} images`);
  const uidFact = fact(facts, "Study Instance UID", uid, "mono uid");
  if (uidFact) uidFact.classList.add("wide");
  $("#study-zip").href = `/download/studies/${encodeURIComponent(uid)}`;
}

function byNumber(keyword) {
  return (a, b) => (parseFloat(value(a, keyword)) || 0) - (parseFloat(value(b, keyword)) || 0);
}

function seriesCard(study, doc) {
  const series = value(doc, "SeriesInstanceUID");
  const base = `${ROOT}/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
  const card = $("#series-card").content.firstElementChild.cloneNode(true);
  card.dataset.uid = series;
  const number = value(doc, "SeriesNumber");
  const modality = value(doc, "Modality");
  const image = $("img", card);
  image.alt = `Series ${number} thumbnail`;
  image.addEventListener("load", () => card.classList.add("loaded"));
  image.addEventListener("error", () => card.classList.add("no-preview"));
  image.src = `${base}/thumbnail?viewport=160,160`;
  $(".card-title", card).textContent =
    [modality, number ? `Series ${number}` : ""].filter(Boolean).join(" · ") || "Series";
  const count = value(doc, "NumberOfSeriesRelatedInstances");
  $(".card-meta", card).textContent = [
    value(doc, "SeriesDescription"), value(doc, "BodyPartExamined"),
    count ? `${count} image${count === "1" ? "" : "s"}` : "",
  ].filter(Boolean).join(" · ");
  const zip = $(".series-zip", card);
  zip.href = `/download/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
  zip.setAttribute("aria-label", `Download series ${number} as ZIP`);
  const button = $(".show-instances", card);
  button.addEventListener("click", () => toggleInstances(card, study, series, base));
  $(".more-instances", card).addEventListener("click",
    () => loadInstances(card, study, series, base));
  return card;
}

async function toggleInstances(card, study, series, base) {
  const panel = $(".instances", card);
  const open = panel.hidden;
  panel.hidden = !open;
  card.classList.toggle("open", open);
  const button = $(".show-instances", card);
  button.setAttribute("aria-expanded", String(open));
  button.textContent = open ? "Hide instances" : "Instances";
  if (open && !card.dataset.loaded) await loadInstances(card, study, series, base);
}

async function loadInstances(card, study, series, base) {
  const body = $(".instances tbody", card);
  const offset = body.children.length;
  const more = $(".more-instances", card);
  setBusy(true);
  try {
    const query = new URLSearchParams({ limit: String(INSTANCE_PAGE + 1),
      offset: String(offset) });
    const instances = await getJSON(`${base}/instances?${query}`);
    card.dataset.loaded = "true";
    const shown = instances.slice(0, INSTANCE_PAGE).sort(byNumber("InstanceNumber"));
    for (const doc of shown) {
      const uid = value(doc, "SOPInstanceUID");
      const row = document.createElement("tr");
      row.dataset.uid = uid;
      cell(row, value(doc, "InstanceNumber"), "num");
      const sopClass = value(doc, "SOPClassUID");
      cell(row, SOP_CLASSES[sopClass] || sopClass);
      const rows = value(doc, "Rows");
      const columns = value(doc, "Columns");
      cell(row, rows && columns ? `${columns} × ${rows}` : "");
      cell(row, value(doc, "NumberOfFrames") || (rows ? "1" : ""), "num");
      const actions = cell(row, "", "act");
      actions.append(downloadLink(
        `/download/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}` +
        `/instances/${encodeURIComponent(uid)}`, ".dcm",
        `Download instance ${value(doc, "InstanceNumber")}`));
      body.append(row);
    }
    more.hidden = instances.length <= INSTANCE_PAGE;
  } catch (error) {
    showMessage(`Could not list the instances: ${error.message}`);
  } finally {
    setBusy(false);
  }
}

async function showStudy(uid) {
  $("#list").hidden = true;
  $("#search").hidden = true;
  $("#study").hidden = false;
  state.current = uid;
  const grid = $("#series");
  grid.replaceChildren();
  $("#series-count").textContent = "";
  setBusy(true);
  try {
    let doc = state.studies.find((d) => value(d, "StudyInstanceUID") === uid);
    if (!doc) {
      const found = await getJSON(`${ROOT}/studies?StudyInstanceUID=${encodeURIComponent(uid)}`);
      if (!found.length) throw new Error("this study is not in the archive");
      doc = found[0];
    }
    renderStudyHead(doc, uid);
    document.title = `minipacs · ${personName(value(doc, "PatientName"))}`;
    const query = "includefield=SeriesDate&includefield=BodyPartExamined";
    const series = await getJSON(`${ROOT}/studies/${encodeURIComponent(uid)}/series?${query}`);
    if (state.current !== uid) return;
    series.sort(byNumber("SeriesNumber"));
    $("#series-count").textContent = `(${series.length})`;
    grid.replaceChildren(...series.map((s) => seriesCard(uid, s)));
    showMessage("");
  } catch (error) {
    showMessage(`Could not open the study: ${error.message}`);
  } finally {
    setBusy(false);
  }
}

function showList() {
  state.current = null;
  $("#study").hidden = true;
  $("#search").hidden = false;
  $("#list").hidden = false;
  document.title = "minipacs · Studies";
}

function openStudy(uid) {
  state.fromList = true;
  location.hash = `study=${encodeURIComponent(uid)}`;
}

function studyInHash() {
  const match = /^#study=(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

function route() {
  const uid = studyInHash();
  if (uid) showStudy(uid);
  else showList();
}

// --- wiring ----------------------------------------------------------------------------------

function start() {
  const form = $("#search");
  fillForm(new URLSearchParams(location.search));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.page = 0;
    search(true);
  });
  $("#do-clear").addEventListener("click", () => {
    form.reset();
    state.page = 0;
    search(true);
  });
  for (const chip of document.querySelectorAll(".chip")) {
    chip.addEventListener("click", () => {
      const days = chip.dataset.days;
      form.from.value = days === "" ? "" : isoDay(Math.max(0, Number(days) - 1));
      form.to.value = days === "" ? "" : isoDay(0);
      state.page = 0;
      search(true);
    });
  }
  $("#page-size").addEventListener("change", () => {
    state.page = 0;
    search(true);
  });
  $("#prev").addEventListener("click", () => {
    state.page = Math.max(0, state.page - 1);
    search(true);
  });
  $("#next").addEventListener("click", () => {
    state.page += 1;
    search(true);
  });
  $("#back").addEventListener("click", () => {
    if (state.fromList) history.back();
    else location.hash = "";
    state.fromList = false;
  });
  window.addEventListener("hashchange", route);
  window.addEventListener("popstate", () => {
    if (studyInHash() || location.search === state.searched) return;
    fillForm(new URLSearchParams(location.search));
    search();
  });
  search();
  route();
}

document.addEventListener("DOMContentLoaded", start);
