/* QC review on the cohort page of a kneescope report (plain JavaScript, no framework; works
   from file://).

   Each knee card (article[data-item-id]) has radio inputs name="decision-<item_id>" with the
   values accept | reject | resegment and a textarea name="note-<item_id>"; input#reviewer
   holds the reviewer's name. Decisions persist in localStorage per run (key
   "kneescope-qc-decisions:<run>:<digest of the run's items>", data-review-key), so a reload
   or a later visit keeps them, and another workspace's run of the same name does not. The button
   #export-decisions downloads qc-decisions-<run>.json:

   {"format": "kneescope-qc-decisions", "version": 1, "run": ..., "kneescope_version": ...,
    "reviewer": ..., "exported_at": "YYYY-MM-DDTHH:MM:SSZ",
    "decisions": [{"item_id", "subject", "visit", "side", "series", "decision", "note",
                   "decided_at"}, ...]}

   which `kneescope qc import FILE` writes into the catalog. Nothing here writes HTML from
   data: every text goes in through textContent or value. */
(function () {
  "use strict";

  var root = document.querySelector("[data-review-run]");
  if (!root) {
    return;
  }
  var run = root.getAttribute("data-review-run");
  var storageKey = "kneescope-qc-decisions:" + (root.getAttribute("data-review-key") || run);
  var cards = Array.prototype.slice.call(root.querySelectorAll("article[data-item-id]"));
  var reviewer = document.getElementById("reviewer");
  var exportButton = document.getElementById("export-decisions");
  var status = document.getElementById("export-status");
  var filter = document.getElementById("review-filter");
  var count = document.getElementById("review-count");
  var DECISIONS = ["accept", "reject", "resegment"];

  function now() {
    return new Date().toISOString().replace(/\.\d{3}Z$/, "Z");
  }

  function load() {
    try {
      var state = JSON.parse(window.localStorage.getItem(storageKey) || "null");
      if (state && typeof state === "object" && state.decisions && typeof state.decisions === "object") {
        return state;
      }
    } catch (e) {
      /* storage unavailable or unreadable: start empty */
    }
    return { reviewer: "", decisions: {} };
  }

  var state = load();

  function save() {
    try {
      window.localStorage.setItem(storageKey, JSON.stringify(state));
    } catch (e) {
      setStatus("This browser does not keep the decisions (storage unavailable): export before leaving the page.", true);
    }
  }

  function setStatus(text, isError) {
    if (!status) {
      return;
    }
    status.textContent = text;
    status.className = "export-status" + (isError ? " error" : "");
  }

  function itemOf(card) {
    return card.getAttribute("data-item-id");
  }

  function radios(card) {
    return Array.prototype.slice.call(card.querySelectorAll('input[type="radio"]')).filter(function (r) {
      return r.name === "decision-" + itemOf(card);
    });
  }

  function noteOf(card) {
    var boxes = Array.prototype.slice.call(card.querySelectorAll("textarea")).filter(function (t) {
      return t.name === "note-" + itemOf(card);
    });
    return boxes.length ? boxes[0] : null;
  }

  function paint(card) {
    var entry = state.decisions[itemOf(card)];
    DECISIONS.forEach(function (d) {
      card.classList.toggle("decision-" + d, Boolean(entry && entry.decision === d));
    });
  }

  function decidedCount() {
    return cards.filter(function (card) {
      var entry = state.decisions[itemOf(card)];
      return entry && DECISIONS.indexOf(entry.decision) >= 0;
    }).length;
  }

  function applyFilter() {
    var mode = filter ? filter.value : "all";
    cards.forEach(function (card) {
      var entry = state.decisions[itemOf(card)];
      var decided = Boolean(entry && DECISIONS.indexOf(entry.decision) >= 0);
      var show = mode === "all" ||
        (mode === "flagged" && card.getAttribute("data-flagged") === "true") ||
        (mode === "undecided" && !decided) ||
        (mode === "decided" && decided);
      card.hidden = !show;
    });
    if (count) {
      var flagged = cards.filter(function (c) { return c.getAttribute("data-flagged") === "true"; }).length;
      count.textContent = decidedCount() + " of " + cards.length + " knees decided (" + flagged + " QC-flagged)";
    }
  }

  cards.forEach(function (card) {
    var item = itemOf(card);
    var entry = state.decisions[item];
    var note = noteOf(card);
    radios(card).forEach(function (radio) {
      radio.checked = Boolean(entry && entry.decision === radio.value);
      radio.addEventListener("change", function () {
        if (!radio.checked) {
          return;
        }
        state.decisions[item] = {
          decision: radio.value,
          note: note ? note.value : "",
          decided_at: now()
        };
        save();
        paint(card);
        applyFilter();
        setStatus("", false);
      });
    });
    if (note) {
      note.value = entry && typeof entry.note === "string" ? entry.note : "";
      note.addEventListener("input", function () {
        var current = state.decisions[item];
        if (current) {
          current.note = note.value;
        } else {
          state.decisions[item] = { decision: null, note: note.value, decided_at: null };
        }
        save();
      });
    }
    var clear = card.querySelector("button.clear-decision");
    if (clear) {
      clear.addEventListener("click", function () {
        delete state.decisions[item];
        radios(card).forEach(function (r) { r.checked = false; });
        if (note) {
          note.value = "";
        }
        save();
        paint(card);
        applyFilter();
      });
    }
    paint(card);
  });

  if (reviewer) {
    reviewer.value = typeof state.reviewer === "string" ? state.reviewer : "";
    reviewer.addEventListener("input", function () {
      state.reviewer = reviewer.value;
      save();
    });
  }
  if (filter) {
    filter.addEventListener("change", applyFilter);
  }
  applyFilter();

  function decisionsFile() {
    var decisions = [];
    cards.forEach(function (card) {
      var entry = state.decisions[itemOf(card)];
      if (!entry || DECISIONS.indexOf(entry.decision) < 0) {
        return;
      }
      decisions.push({
        item_id: itemOf(card),
        subject: card.getAttribute("data-subject"),
        visit: card.getAttribute("data-visit"),
        side: card.getAttribute("data-side"),
        series: card.getAttribute("data-series"),
        decision: entry.decision,
        note: typeof entry.note === "string" ? entry.note : "",
        decided_at: entry.decided_at || now()
      });
    });
    return {
      format: root.getAttribute("data-decisions-format"),
      version: Number(root.getAttribute("data-decisions-version")),
      run: run,
      kneescope_version: root.getAttribute("data-kneescope-version"),
      reviewer: reviewer ? reviewer.value.trim() : "",
      exported_at: now(),
      decisions: decisions
    };
  }

  if (exportButton) {
    exportButton.addEventListener("click", function () {
      var file = decisionsFile();
      if (!file.reviewer) {
        setStatus("Enter your name as reviewer first: the catalog records who decided.", true);
        if (reviewer) {
          reviewer.focus();
        }
        return;
      }
      if (!file.decisions.length) {
        setStatus("No decisions yet: mark at least one knee accept, reject or re-segment.", true);
        return;
      }
      var blob = new Blob([JSON.stringify(file, null, 2) + "\n"], { type: "application/json" });
      var url = URL.createObjectURL(blob);
      var link = document.createElement("a");
      link.href = url;
      link.download = "qc-decisions-" + run + ".json";
      link.style.display = "none";
      document.body.appendChild(link);
      link.click();
      document.body.removeChild(link);
      window.setTimeout(function () { URL.revokeObjectURL(url); }, 10000);
      setStatus(
        "Exported " + file.decisions.length + " decision" + (file.decisions.length > 1 ? "s" : "") +
        " to qc-decisions-" + run + ".json; import it with: kneescope qc import qc-decisions-" + run + ".json",
        false
      );
    });
  }
}());
