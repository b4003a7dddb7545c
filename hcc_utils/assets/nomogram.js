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
 *   outputs: [data-points-for="<name>"], #nomo-total, #nomo-prob (percent text, full precision in data-value),
 *            #nomo-er, #nomo-group.
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

  function render(container, model) {
    container.innerHTML = "";
    container.classList.add("hcc-nomogram");
    var style = el("style", {}, ".hcc-nomogram{font-family:sans-serif;font-size:14px;max-width:640px;border:1px solid #ccc;" +
      "border-radius:6px;padding:10px}.hcc-nomogram table{border-collapse:collapse;width:100%}" +
      ".hcc-nomogram td{padding:3px 6px;vertical-align:middle}.hcc-nomogram .pts{text-align:right;width:5em}" +
      ".hcc-nomogram .res{font-weight:bold}.hcc-nomogram input[type=number]{width:6em}");
    container.appendChild(style);
    container.appendChild(el("div", { "class": "title" }, model.title || "Nomogram"));
    var table = el("table");
    var head = el("tr");
    head.appendChild(el("td", {}, "Variable"));
    head.appendChild(el("td", {}, "Value"));
    head.appendChild(el("td", { "class": "pts" }, "Points"));
    table.appendChild(head);
    var inputs = [];
    model.variables.forEach(function (v) {
      var tr = el("tr");
      tr.appendChild(el("td", {}, v.axis_label || v.label));
      var td = el("td");
      var input;
      if (v.type === "continuous") {
        input = el("input", { type: "range", "data-var": v.name, min: v.min, max: v.max, step: v.step,
                              value: v["default"] });
        var num = el("input", { type: "number", "data-var-number": v.name, min: v.min, max: v.max, step: v.step,
                                value: v["default"] });
        num.addEventListener("input", function () { input.value = num.value; update(); });
        input.addEventListener("input", function () { num.value = input.value; update(); });
        td.appendChild(input);
        td.appendChild(num);
      } else {
        input = el("select", { "data-var": v.name });
        v.levels.forEach(function (lv) {
          var o = el("option", { value: lv }, lv);
          if (String(lv) === String(v["default"])) { o.selected = true; }
          input.appendChild(o);
        });
        input.addEventListener("change", update);
        td.appendChild(input);
      }
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
    var totalEl = line("Total points:", "nomo-total");
    var probEl = line("Predicted " + model.landmark + "-month recurrence-free survival:", "nomo-prob");
    var erEl = line("Probability of recurrence within " + model.landmark + " months:", "nomo-er");
    var groupEl = line("Risk group:", "nomo-group");
    container.appendChild(out);

    function update() {
      var values = {};
      inputs.forEach(function (pair) { values[pair[0].name] = pair[1].value; });
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
      container.setAttribute("data-ready", "1");
    }
    update();
    return { update: update };
  }

  var api = { compute: compute, termLp: termLp, render: render };
  if (typeof module !== "undefined" && module.exports) { module.exports = api; }
  else { root.HCCNomogram = api; }
})(typeof window !== "undefined" ? window : this);
