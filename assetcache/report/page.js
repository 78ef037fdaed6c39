// The report's one script (its sha256 is in the page's Content-Security-Policy). It lists the
// refs of the JSON data block a page at a time, as the search box, the account and urgency
// filters and the order say; the DOM never holds more than one page of rows, so 10,000 refs
// cost what 100 do. Every value goes into the page as a text node or a DOM property, never as
// markup: a hostile file name or ref stays text.
"use strict";

const data = JSON.parse(document.getElementById("report-data").textContent);
// The fields of a row, in the order report/rows.py writes them.
const rows = data.rows.map(
  ([ref, account, path, size, sizeText, type, left, leftText, grade, expires, src, fallback,
    image]) => ({
    ref, account, path, size, sizeText, type, left, leftText, grade, expires, src, fallback,
    image,
    name: path.slice(path.lastIndexOf("/") + 1).toLowerCase(),
    key: (path + "\n" + ref).toLowerCase(),
  }),
);

const search = document.getElementById("search");
const account = document.getElementById("account");
const order = document.getElementById("sort");
const gradeBoxes = [...document.querySelectorAll("input[name='grade']")];
const body = document.getElementById("rows");
const status = document.getElementById("status");
const previous = document.getElementById("previous");
const next = document.getElementById("next");

const collator = new Intl.Collator("en", { numeric: true });
const ORDERS = {
  soonest: (a, b) => a.left - b.left,
  latest: (a, b) => b.left - a.left,
  name: (a, b) => collator.compare(a.name, b.name) || a.left - b.left,
  size: (a, b) => b.size - a.size || a.left - b.left,
  account: (a, b) => a.account - b.account || a.left - b.left,
};

let matching = [];
let first = 0;

const number = (n) => n.toLocaleString("en");

function refilter() {
  const terms = search.value.toLowerCase().split(/\s+/).filter(Boolean);
  const only = account.value === "" ? -1 : Number(account.value);
  const wanted = new Set(gradeBoxes.filter((box) => box.checked).map((box) => box.value));
  const counts = new Map();
  matching = [];
  for (const row of rows) {
    if ((only >= 0 && row.account !== only) || !terms.every((t) => row.key.includes(t))) {
      continue;
    }
    counts.set(row.grade, (counts.get(row.grade) || 0) + 1);
    if (wanted.has(row.grade)) {
      matching.push(row);
    }
  }
  // Each chip counts what the search and the account leave, checked or not.
  for (const box of gradeBoxes) {
    box.parentElement.querySelector(".count").textContent = number(counts.get(box.value) || 0);
  }
  first = 0;
  render();
}

function render() {
  const shown = matching.slice(first, first + data.pageRows);
  body.replaceChildren(...shown.map(rowElement));
  status.textContent = matching.length
    ? `${number(first + 1)}-${number(first + shown.length)} of ${number(matching.length)} refs`
    : "no ref matches";
  previous.disabled = first === 0;
  next.disabled = first + data.pageRows >= matching.length;
}

function element(tag, className) {
  const made = document.createElement(tag);
  if (className) {
    made.className = className;
  }
  return made;
}

function cell(text, className) {
  const td = element("td", className);
  td.textContent = text;
  return td;
}

// Text that may wrap only after one of `separators`: a <wbr> after each (copying the text
// copies no extra character). The stylesheet's white-space:nowrap keeps every other place,
// a "-" inside a file name included, from wrapping; a <wbr> still may.
function breakable(text, separators) {
  const parts = document.createDocumentFragment();
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    if (separators.includes(text[i])) {
      parts.append(text.slice(start, i + 1), element("wbr"));
      start = i + 1;
    }
  }
  if (start < text.length) {
    parts.append(text.slice(start));
  }
  return parts;
}

function rowElement(row) {
  const tr = element("tr", "g-" + row.grade);
  const left = element("span", "badge g-" + row.grade);
  left.textContent = row.leftText;
  const leftCell = element("td", "left");
  leftCell.append(left);
  // Time left first after the picture: what the reader came for, visible however narrow.
  tr.append(
    pictureCell(row), leftCell, pathCell(row.path), refCell(row.ref),
    cell(data.accounts[row.account]), cell(row.sizeText, "num size"), cell(row.type),
    cell(row.expires, "expires"),
  );
  return tr;
}

function pictureCell(row) {
  const td = element("td", "pic");
  const src = row.image >= 0 ? data.images[row.image] : row.src;
  if (!src) {
    td.append(noPicture());
    return td;
  }
  const img = element("img");
  img.alt = "";
  img.loading = "lazy";
  img.decoding = "async";
  if (row.fallback) {
    img.dataset.fallback = row.fallback;
  }
  img.addEventListener("error", () => {
    // The CDN's copy failed: the local file; that failed too (or there is none): a blank.
    if (img.dataset.fallback && img.getAttribute("src") !== img.dataset.fallback) {
      img.src = img.dataset.fallback;
    } else {
      img.replaceWith(noPicture());
    }
  });
  img.src = src;
  td.append(img);
  return td;
}

function noPicture() {
  const blank = element("span", "none");
  blank.title = "no picture: the file is gone and the CDN's copy did not load";
  return blank;
}

function pathCell(path) {
  const td = element("td", "path");
  if (!path) {
    td.textContent = "(bytes)";
    td.classList.add("none");
    return td;
  }
  const cut = path.lastIndexOf("/") + 1;
  const dir = element("span", "dir");
  dir.append(breakable(path.slice(0, cut), "/"));
  const name = element("span", "name");
  name.textContent = path.slice(cut);
  td.append(dir, name);
  td.title = path;
  return td;
}

function refCell(ref) {
  const td = element("td", "ref");
  const code = element("code");
  code.append(breakable(ref, "-:_/"));
  const copy = element("button", "copy");
  copy.type = "button";
  copy.dataset.ref = ref;
  copy.textContent = "copy";
  td.append(code, copy);
  return td;
}

function turn(by) {
  first += by * data.pageRows;
  render();
  document.getElementById("refs").scrollIntoView({ block: "start" });
}

// One listener for every copy button, present and future.
body.addEventListener("click", async (event) => {
  const copy = event.target.closest("button.copy");
  if (copy) {
    await navigator.clipboard.writeText(copy.dataset.ref);
    copy.textContent = "copied";
  }
});
// A count in the summary lists those refs: its account (or all) and its grades.
for (const pick of document.querySelectorAll("button.pick")) {
  pick.addEventListener("click", () => {
    const grades = pick.dataset.grades.split(" ");
    account.value = pick.dataset.account;
    for (const box of gradeBoxes) {
      box.checked = grades.includes(box.value);
    }
    search.value = "";
    refilter();
    document.getElementById("refs").scrollIntoView({ block: "start" });
  });
}
search.addEventListener("input", refilter);
account.addEventListener("change", refilter);
for (const box of gradeBoxes) {
  box.addEventListener("change", refilter);
}
order.addEventListener("change", () => {
  rows.sort(ORDERS[order.value]);
  refilter();
});
previous.addEventListener("click", () => turn(-1));
next.addEventListener("click", () => turn(1));
document.addEventListener("keydown", (event) => {
  if (event.key === "/" && !event.target.closest("input, select")) {
    event.preventDefault();
    search.focus();
  }
});

// Times left are as of the moment the page was made: say so when that was a while ago.
const age = Date.now() - Date.parse(data.made);
if (age > 3600 * 1000) {
  const stale = document.getElementById("stale");
  const hours = Math.floor(age / 3600000);
  const ago = hours < 48 ? `${hours} hours` : `${Math.floor(hours / 24)} days`;
  stale.textContent = `This page was made ${ago} ago: the times left are as of then. `
    + "Run assetcache report again for today's.";
  stale.hidden = false;
}

rows.sort(ORDERS[order.value]);
refilter();
