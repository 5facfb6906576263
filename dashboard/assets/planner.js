/* Client-side style functions of the grid planner page, referenced from Python as
   {"variable": "gridgovPlanner.<name>"}. Geometry reaches the browser once per unit; every edit
   only changes `hideout` (block → grid, grid → colour, moved buildings, selection). */
(function () {
  "use strict";
  const gp = (window.gridgovPlanner = window.gridgovPlanner || {});
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));

  gp.blockStyle = function (f, ctx) {
    const h = (ctx && ctx.hideout) || {};
    const grid = (h.grid || {})[f.properties.id];
    const colour = (h.colours || {})[grid] || "#64748b";
    const selected = (h.selected || []).includes(f.properties.id);
    return {color: selected ? "#facc15" : "#0f172a", weight: selected ? 3 : 0.6, fillColor: colour,
            fillOpacity: selected ? 0.75 : 0.5, opacity: 0.9};
  };
  gp.gridStyle = function (f) {
    return {color: "#f8fafc", weight: 2.5, fill: false, opacity: 0.95};
  };
  gp.buildingStyle = function (f, ctx) {
    const h = (ctx && ctx.hideout) || {};
    const moved = (h.moved || []).includes(f.properties.id);
    return {color: moved ? "#f0abfc" : "#1e293b", weight: moved ? 2 : 0.5,
            fillColor: moved ? "#d946ef" : "#e2e8f0", fillOpacity: moved ? 0.95 : 0.6};
  };
  gp.gridLabel = function (f, layer) {
    const p = f.properties;
    layer.bindTooltip(esc(p.code.slice(-3)) + " · " + esc(p.households) + "户", {permanent: true, direction: "center", className: "lbl", interactive: false});
  };
  gp.blockTip = function (f, layer) {
    layer.bindTooltip(esc(f.properties.id) + " · " + esc(f.properties.households) + "户");
  };
})();
