/*
 * hcc-dsfr nomogram calculator (static HTML, no network).
 *
 * Computes exactly what hcc_utils.survival.Nomogram.predict computes, from the JSON export (nomogram.json):
 *   lp_v(x)   = beta * (x / per)                      continuous
 *             = lp[index of level]                    binary / categorical
 *   points_v  = (lp_v(x) - lp_min_v) * scale
 *   total     = sum of points_v
 *   LP        = total / scale + lp_offset
 *   RFS(t)    = baseline_survival ** exp(LP - centre)
 *   ER prob   = 1 - RFS(t); risk group "high" when ER prob >= risk_threshold
 *
 * DOM contract of render() (stable; tests and the book rely on it):
 *   inputs:  one element per variable with data-var="<name>" (input[type=range] for continuous, select otherwise;
 *            option values are the level labels); a number box data-var-number="<name>" mirrors each slider;
 *   the number box holds the value used (the slider moves it, nothing is clamped);
 *   outputs: [data-points-for="<name>"], #nomo-total, #nomo-prob (percent text, full precision in data-value),
 *            #nomo-er, #nomo-group, #nomo-cutoff (the risk-group cut-off, its value in data-value);
 *   invalid input (empty, not a number, outside the fitted range): a message in [data-msg-for="<name>"] and
 *            #nomo-status, every output shows a dash without data-value, and the container gets data-valid="0".
 * Works in a browser (global HCCNomogram) and in node (module.exports).
 */
(function (root) {
  "use strict";

  function termLp(v, value) {
    if (v.type === "continuous") {
      var x = Number(value);
      if (!isFinite(x)) { throw new Error("nomogram: " + v.name + " is not a number: " + value); }
      return v.beta * (x / v.per);
    }
    var key = value;
    if (v.type === "binary" && typeof value === "number") { key = v.levels[value]; }
    var i = v.levels.indexOf(String(key));
    if (i < 0) { throw new Error("nomogram: " + v.name + " = " + value + " is not one of " + v.levels.join(", ")); }
    return v.lp[i];
  }

  function compute(model, values) {
    var points = {};
    var total = 0.0;
    for (var k = 0; k < model.variables.length; k++) {
      var v = model.variables[k];
      if (!(v.name in values)) { throw new Error("nomogram: no value for " + v.name); }
      var p = (termLp(v, values[v.name]) - v.lp_min) * model.scale;
      points[v.name] = p;
      total += p;
    }
    var lp = total / model.scale + model.lp_offset;
    var rfs = Math.pow(model.baseline_survival, Math.exp(lp - model.centre));
    var er = 1.0 - rfs;
    var group = (model.risk_threshold === null || model.risk_threshold === undefined) ? null :
      (er >= model.risk_threshold ? "high" : "low");
    return { points: points, total_points: total, lp: lp, rfs: rfs, er_prob: er, risk_group: group };
  }

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    for (var a in (attrs || {})) { e.setAttribute(a, attrs[a]); }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function fmt(x, d) { return Number(x).toFixed(d); }

  // A problem with one input value, or null: empty, not a number, outside the range of the fitted data.
  function checkValue(v, raw) {
    var name = v.axis_label || v.label || v.name;
    if (v.type !== "continuous") {
      return v.levels.indexOf(String(raw)) < 0 ? name + ": choose one of " + v.levels.join(", ") + "." : null;
    }
    var s = String(raw === undefined || raw === null ? "" : raw).trim();
    if (s === "") { return name + " is empty: enter a value between " + v.min + " and " + v.max + "."; }
    var x = Number(s);
    if (!isFinite(x)) { return name + ": \u201c" + s + "\u201d is not a number."; }
    if (x < v.min || x > v.max) {
      return name + " = " + s + " is outside " + v.min + " to " + v.max +
        ", the range of the patients the model was fitted on; enter a value in that range.";
    }
    return null;
  }

  // Every problem of a set of values (an empty list when the nomogram can be computed).
  function validate(model, values) {
    var problems = [];
    model.variables.forEach(function (v) {
      var msg = checkValue(v, values[v.name]);
      if (msg) { problems.push({ name: v.name, message: msg }); }
    });
    return problems;
  }

  function render(container, model) {
    container.innerHTML = "";
    container.classList.add("hcc-nomogram");
    var style = el("style", {}, ".hcc-nomogram{font-family:sans-serif;font-size:15px;max-width:680px;" +
      "border:1px solid #999;border-radius:6px;padding:10px}.hcc-nomogram table{border-collapse:collapse;width:100%}" +
      ".hcc-nomogram td{padding:3px 6px;vertical-align:middle}.hcc-nomogram .pts{text-align:right;width:5em}" +
      ".hcc-nomogram .res{font-weight:bold}.hcc-nomogram input[type=number]{width:6em}" +
      ".hcc-nomogram .msg{color:#a40000;font-size:13px}.hcc-nomogram input[aria-invalid=true]{outline:2px solid #a40000}" +
      ".hcc-nomogram .status{margin-top:6px;padding:4px 6px;border-left:4px solid #a40000;background:#fff4f4}" +
      ".hcc-nomogram .note{color:#444;font-size:13px;margin-top:4px}");
    container.appendChild(style);
    container.appendChild(el("div", { "class": "title" }, model.title || "Nomogram"));
    var table = el("table");
    var head = el("tr");
    head.appendChild(el("th", {}, "Variable"));
    head.appendChild(el("th", {}, "Value"));
    head.appendChild(el("th", { "class": "pts" }, "Points"));
    table.appendChild(head);
    var inputs = [];
    model.variables.forEach(function (v) {
      var tr = el("tr");
      var label = v.axis_label || v.label;
      tr.appendChild(el("td", {}, label));
      var td = el("td");
      var input;
      if (v.type === "continuous") {
        // The number box holds the value used; the slider only moves it (never clamps what is typed).
        var slider = el("input", { type: "range", "data-var": v.name, min: v.min, max: v.max, step: v.step,
                                   value: v["default"], "aria-label": label + " (slider)" });
        input = el("input", { type: "number", "data-var-number": v.name, min: v.min, max: v.max, step: "any",
                              value: v["default"], "aria-label": label });
        input.addEventListener("input", function () {
          if (!checkValue(v, input.value)) { slider.value = input.value; }
          update();
        });
        slider.addEventListener("input", function () { input.value = slider.value; update(); });
        td.appendChild(slider);
        td.appendChild(input);
        td.appendChild(el("span", { "class": "note" }, " " + v.min + " to " + v.max));
      } else {
        input = el("select", { "data-var": v.name, "aria-label": label });
        v.levels.forEach(function (lv) {
          var o = el("option", { value: lv }, lv);
          if (String(lv) === String(v["default"])) { o.selected = true; }
          input.appendChild(o);
        });
        input.addEventListener("change", update);
        td.appendChild(input);
      }
      td.appendChild(el("div", { "class": "msg", "data-msg-for": v.name, role: "alert" }, ""));
      inputs.push([v, input]);
      tr.appendChild(td);
      tr.appendChild(el("td", { "class": "pts", "data-points-for": v.name }, ""));
      table.appendChild(tr);
    });
    container.appendChild(table);
    var out = el("div");
    var line = function (label, id) {
      var d = el("div");
      d.appendChild(document.createTextNode(label + " "));
      var s = el("span", { id: id, "class": "res" }, "");
      d.appendChild(s);
      out.appendChild(d);
      return s;
    };
    var unit = model.time_unit || "months";
    var totalEl = line("Total points:", "nomo-total");
    var probEl = line("Predicted " + model.landmark + "-" + unit.replace(/s$/, "") + " recurrence-free survival:",
                      "nomo-prob");
    var erEl = line("Probability of recurrence within " + model.landmark + " " + unit + ":", "nomo-er");
    var groupEl = line("Risk group:", "nomo-group");
    var cut = model.risk_threshold;
    var cutText = (cut === null || cut === undefined) ? "no cut-off was chosen for this model" :
      "high when the probability of recurrence within " + model.landmark + " " + unit + " is at least " +
      fmt(100 * cut, 1) + "%" + (model.risk_threshold_rule ? " (" + model.risk_threshold_rule + ")" : "") +
      ", otherwise low";
    var cutEl = el("div", { id: "nomo-cutoff", "class": "note",
                            "data-value": (cut === null || cut === undefined) ? "" : String(cut) },
                   "Risk-group cut-off: " + cutText + ".");
    out.appendChild(cutEl);
    var statusEl = el("div", { id: "nomo-status", "class": "status", role: "alert", hidden: "" }, "");
    out.appendChild(statusEl);
    container.appendChild(out);

    function clearResults() {
      [totalEl, probEl, erEl, groupEl].forEach(function (e) { e.textContent = "\u2014"; e.removeAttribute("data-value"); });
      inputs.forEach(function (pair) {
        container.querySelector('[data-points-for="' + pair[0].name + '"]').textContent = "\u2014";
      });
    }

    function update() {
      var values = {};
      inputs.forEach(function (pair) { values[pair[0].name] = pair[1].value; });
      var problems = validate(model, values);
      inputs.forEach(function (pair) {
        var p = problems.filter(function (q) { return q.name === pair[0].name; })[0];
        container.querySelector('[data-msg-for="' + pair[0].name + '"]').textContent = p ? p.message : "";
        pair[1].setAttribute("aria-invalid", p ? "true" : "false");
      });
      if (problems.length) {
        clearResults();
        statusEl.textContent = "Not computed: " + problems.map(function (q) { return q.message; }).join(" ");
        statusEl.hidden = false;
        container.setAttribute("data-valid", "0");
        container.setAttribute("data-ready", "1");
        return null;
      }
      statusEl.textContent = "";
      statusEl.hidden = true;
      var r = compute(model, values);
      inputs.forEach(function (pair) {
        container.querySelector('[data-points-for="' + pair[0].name + '"]').textContent = fmt(r.points[pair[0].name], 1);
      });
      totalEl.textContent = fmt(r.total_points, 1);
      probEl.textContent = fmt(100 * r.rfs, 1) + "%";
      probEl.setAttribute("data-value", String(r.rfs));
      erEl.textContent = fmt(100 * r.er_prob, 1) + "%";
      erEl.setAttribute("data-value", String(r.er_prob));
      groupEl.textContent = r.risk_group === null ? "n/a" : r.risk_group;
      container.setAttribute("data-valid", "1");
      container.setAttribute("data-ready", "1");
      return r;
    }
    update();
    return { update: update };
  }

  var api = { compute: compute, termLp: termLp, validate: validate, render: render };
  if (typeof module !== "undefined" && module.exports) { module.exports = api; }
  else { root.HCCNomogram = api; }
})(typeof window !== "undefined" ? window : this);
