/* Client-side functions of the command centre, referenced from Python as
   {"variable": "gridgov.<name>"}. dash-leaflet calls style/filter/pointToLayer functions with the
   component's props as the last argument (ctx.hideout). Nothing here talks to the server. */
(function () {
  "use strict";
  const gg = (window.gridgov = window.gridgov || {});
  const esc = (s) => String(s == null ? "" : s).replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
  const OPEN = (s) => !["closed", "evaluated", "cancelled"].includes(s);

  /* Leaflet 1.8 removed DomEvent.fakeStop, which VectorGrid 1.3 still calls on click. */
  if (window.L && L.DomEvent && !L.DomEvent.fakeStop) { L.DomEvent.fakeStop = function () { return true; }; }

  // ---- basemap and units ------------------------------------------------------------------------
  gg.roadStyle = function (f) {
    const major = ["highway", "primary", "trunk", "national", "provincial", "secondary"].includes((f.properties || {}).c);
    return {color: major ? "#5b6b85" : "#3a465a", weight: major ? 2 : 1, opacity: 0.9};
  };
  gg.outlineStyle = function () { return {color: "#93c5fd", weight: 3, fill: false, dashArray: "8 4"}; };
  gg.boundsStyle = function (f, ctx) {
    const sel = ctx && ctx.hideout && f.properties.code === ctx.hideout.selected;
    return {color: "#e2e8f0", weight: sel ? 4 : 2, fillColor: "#0ea5e9", fillOpacity: 0.03, opacity: 0.9};
  };
  gg.hoverStyle = function () { return {weight: 5, color: "#facc15", fillOpacity: 0.12}; };
  gg.bandOf = function (hh, band) {
    if (!band) return "none";
    return hh < band[0] ? "under" : hh > band[1] ? "over" : "inside";
  };
  gg.bandStyle = function (f, ctx) {
    const h = (ctx && ctx.hideout) || {};
    const band = (h.bands || {})[f.properties.level];
    const colour = (h.colours || {})[gg.bandOf(f.properties.hh, band)] || "#64748b";
    return {color: "#94a3b8", weight: 0.8, fillColor: colour, fillOpacity: band ? 0.32 : 0.08, opacity: 0.6};
  };

  /* Labels show only when their unit is at least MIN_PX wide on screen: every level is labelled,
     the finer ones as you zoom in. */
  const MIN_PX = 70;
  /* Tooltips are bound lazily: thousands of hidden permanent tooltips would stall the page. */
  /* Opening a permanent tooltip measures it (a forced layout), so hundreds at once held the main
     thread for 0.2-0.4 s: they are placed LABEL_SLICE at a time, one task each, and a newer pass
     (the map moved again) cancels an older one. */
  const LABEL_SLICE = 25;
  function updateLabels(map) {
    const view = map.getBounds().pad(0.2);
    map._ggLabels = (map._ggLabels || []).filter((l) => l._map);
    const layers = map._ggLabels.slice();
    const pass = (map._ggLabelPass = (map._ggLabelPass || 0) + 1);
    let i = 0;
    (function slice() {
      if (pass !== map._ggLabelPass) return;
      for (const end = Math.min(layers.length, i + LABEL_SLICE); i < end; i++) showLabel(map, layers[i], view);
      if (i < layers.length) setTimeout(slice, 0);
    })();
  }
  function showLabel(map, layer, view) {
    if (!layer._map || !layer.getBounds) return;
    const b = layer.getBounds();
    let show = view.intersects(b);
    if (show) {
      const w = map.latLngToContainerPoint(b.getNorthEast()).x - map.latLngToContainerPoint(b.getSouthWest()).x;
      show = w >= MIN_PX;
    }
    const bound = !!layer.getTooltip();
    if (show && !bound) {
      layer.bindTooltip(esc(layer.feature.properties.name), {permanent: true, direction: "center", className: "lbl " + layer._ggLabelClass, interactive: false});
    } else if (!show && bound) {
      layer.unbindTooltip();
    }
  }
  function label(cls) {
    return function (f, layer) {
      if (f.properties.nolabel) return;  // drawn twice (boundaries and bands): labelled once
      layer._ggLabelClass = cls;
      layer.on("add", function () {
        const map = layer._map;
        if (!map) return;
        gg.watch(map);
        (map._ggLabels = map._ggLabels || []).push(layer);
        if (!map._ggHooked) { map._ggHooked = true; map.on("zoomend moveend", () => updateLabels(map)); }
        clearTimeout(map._ggLabelTimer);
        map._ggLabelTimer = setTimeout(() => updateLabels(map), 50);
      });
    };
  }
  /* The map is created before the grid layout settles; follow the container's real size. */
  gg.watch = function (map) {
    gg.map = map;
    if (map._ggWatched || !window.ResizeObserver) return;
    map._ggWatched = true;
    new ResizeObserver(function () {
      clearTimeout(map._ggResizeTimer);
      map._ggResizeTimer = setTimeout(function () {
        const before = map.getSize();
        map.invalidateSize({pan: false});
        if (map.getSize().equals(before)) return;  // observe() reports once at start: no redraw
        map.stop();
        if (gg.lastViewport && gg.lastViewport.bounds) map.fitBounds(gg.lastViewport.bounds, {animate: false});
      }, 80);
    }).observe(map.getContainer());
  };
  gg.rememberViewport = function (v, view) {
    // the first unit is not a viewport change (the map opens on it): remember its bounds
    gg.lastViewport = v || (view ? {bounds: view.bounds} : gg.lastViewport);
    return "";
  };
  gg.labelChild = label("lbl-child");
  gg.labelDetail = label("lbl-detail");

  // ---- buildings as vector tiles (leaflet.vectorgrid) -----------------------------------------
  gg.buildingColour = function (hh) {
    return hh >= 60 ? "#f97316" : hh >= 30 ? "#facc15" : hh >= 10 ? "#a3e635" : "#67e8f9";
  };
  gg.buildingTiles = function (f, latlng, ctx) {
    const h = ctx.hideout || {};
    if (!L.vectorGrid) { return L.layerGroup(); }
    /* Not the minZoom option: Leaflet would then forbid the whole map to zoom out past it. */
    const minZ = h.minZoom || 14;
    const Gated = L.VectorGrid.Protobuf.extend({
      _isValidTile: function (c) { return c.z >= minZ && L.VectorGrid.Protobuf.prototype._isValidTile.call(this, c); },
    });
    /* 512-px tiles one zoom coarser (zoomOffset -1): the same ground in a quarter of the tiles,
       and each tile is a canvas and a request to set up when the view moves. */
    const layer = new Gated(h.url, {
      maxZoom: 22, tileSize: 512, zoomOffset: -1, interactive: true, rendererFactory: L.canvas.tile,
      getFeatureId: (ft) => ft.properties.code,
      vectorTileLayerStyles: {buildings: function (p) {
        return {fill: true, fillColor: gg.buildingColour(p.hh), fillOpacity: 0.75, color: "#0f172a", weight: 0.6};
      }},
    });
    layer.on("click", function (e) {
      const p = e.layer.properties || {};
      L.popup().setLatLng(e.latlng).setContent(esc(p.code) + "<br>" + esc(p.hh) + " 户 / hh").openOn(layer._map);
    });
    layer.on("load", function () { window.gridgov.tilesLoaded = (window.gridgov.tilesLoaded || 0) + 1; });
    return layer;
  };

  // ---- heatmap (leaflet.heat) -------------------------------------------------------------------
  gg.heatLayer = function (f, latlng, ctx) {
    const h = ctx.hideout || {};
    const cells = f.properties.cells || [];
    const upto = h.step == null ? Infinity : h.step;
    const agg = new Map();
    for (const c of cells) {
      if (c[3] > upto) continue;
      const k = c[0] + "," + c[1];
      agg.set(k, [c[0], c[1], (agg.has(k) ? agg.get(k)[2] : 0) + c[2]]);
    }
    const pts = Array.from(agg.values());
    const sorted = pts.map((p) => p[2]).sort((a, b) => a - b);
    const max = Math.max(1, sorted.length ? sorted[Math.floor(sorted.length * 0.95)] : 1);
    if (!L.heatLayer) { return L.layerGroup(); }
    return L.heatLayer(pts, {radius: 22, blur: 18, max: max, minOpacity: 0.25,
      gradient: {0.2: "#1e3a8a", 0.4: "#0ea5e9", 0.6: "#22c55e", 0.8: "#facc15", 1.0: "#ef4444"}});
  };

  // ---- events -----------------------------------------------------------------------------------
  gg.mergeEvents = function (base, delta) {
    const trig = (window.dash_clientside.callback_context.triggered || []).map((t) => t.prop_id);
    const st = (gg._events = gg._events || {byId: new Map(), cols: null});
    if (!base) return window.dash_clientside.no_update;
    if (!st.cols || trig.includes("cmd-evdata.data") || st.base !== base) {
      st.byId = new Map(); st.cols = base.cols; st.base = base;
      for (const r of base.rows) st.byId.set(r[0], r);
    }
    if (delta && trig.includes("cmd-delta.data")) {
      for (const r of delta.rows) st.byId.set(r[0], r);
      gg.lastDelta = delta.rows.map((r) => r[0]);
    }
    const cols = st.cols;
    const features = [];
    for (const r of st.byId.values()) {
      const p = {};
      cols.forEach((c, i) => { p[c] = r[i]; });
      features.push({type: "Feature", geometry: {type: "Point", coordinates: [p.lon, p.lat]}, properties: p});
    }
    gg.eventCount = features.length;
    gg.eventIds = new Set(features.map((f) => f.properties.id));
    return {type: "FeatureCollection", features: features};
  };
  gg.isOverdue = function (p, now) { return OPEN(p.status) && p.due != null && p.due < now; };
  gg.eventFilter = function (f, ctx) {
    const h = (ctx && ctx.hideout) || {};
    const p = f.properties;
    if (h.cats && h.cats.length && !h.cats.includes(String(p.cat).slice(0, 2))) return false;
    if (h.cutoff != null && p.rep > h.cutoff) return false;
    if (h.mode === "overdue") return gg.isOverdue(p, h.now);
    if (h.mode === "dispatched") return p.resp != null && OPEN(p.status);
    return true;
  };
  function fmtTime(sec, h) {
    if (sec == null) return "—";
    return new Date(sec * 1000).toLocaleString(h.lang === "en" ? "en-GB" : "zh-CN", {timeZone: h.tz || "Asia/Shanghai", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit"});
  }
  gg.eventCard = function (p, h) {
    const c = h.card || {};
    const over = gg.isOverdue(p, h.now);
    const row = (k, v) => "<tr><th>" + esc(c[k]) + "</th><td>" + v + "</td></tr>";
    return "<div class='card'><div class='card-title'>" + esc((h.icons || {})[String(p.cat).slice(0, 2)] || "") + " " +
      esc((h.catNames || {})[p.cat] || p.cat) + (over ? " <span class='card-over'>" + esc(c.overdue) + "</span>" : "") +
      "</div><table>" + row("code", esc(p.code)) + row("status", "<span style='color:" + ((h.statusColours || {})[p.status] || "#ccc") + "'>" + esc((h.status || {})[p.status] || p.status) + "</span>") +
      row("priority", "P" + esc(p.prio)) + row("channel", esc(p.chan)) + row("reported", fmtTime(p.rep, h)) +
      row("due", fmtTime(p.due, h)) + row("level", esc((h.levels || {})[p.level] || p.level) + " · " + esc(p.hunit || "")) + "</table></div>";
  };
  gg.eventMarker = function (f, latlng, ctx) {
    const h = (ctx && ctx.hideout) || {};
    const p = f.properties;
    const over = gg.isOverdue(p, h.now);
    const colour = over ? "#ef4444" : (h.statusColours || {})[p.status] || "#94a3b8";
    const icon = (h.icons || {})[String(p.cat).slice(0, 2)] || "•";
    const badge = (h.badges || {})[p.level] || "";
    const html = "<div class='ev" + (over ? " overdue" : "") + (OPEN(p.status) ? "" : " done") + "' style='border-color:" + colour + ";box-shadow:0 0 0.6rem " + colour +
      "' data-id='" + p.id + "'><span class='ev-ico'>" + icon + "</span>" +
      (badge ? "<b class='ev-badge lv-" + esc(p.level) + "'>" + esc(badge) + "</b>" : "") + "</div>";
    const m = L.marker(latlng, {icon: L.divIcon({html: html, className: "ev-wrap", iconSize: [34, 34], iconAnchor: [17, 17]}),
      zIndexOffset: over ? 1000 : 0});
    m.bindPopup(gg.eventCard(p, h), {maxWidth: 420, className: "dark-popup"});
    return m;
  };
  gg.clusterIcon = function (f, latlng, index) {
    const n = f.properties.point_count;
    const size = n < 10 ? 34 : n < 100 ? 42 : n < 1000 ? 52 : 62;
    const html = "<div class='cl' style='width:" + size + "px;height:" + size + "px;line-height:" + size + "px'>" + f.properties.point_count_abbreviated + "</div>";
    return L.marker(latlng, {icon: L.divIcon({html: html, className: "cl-wrap", iconSize: [size, size]})});
  };

  // ---- responders -------------------------------------------------------------------------------
  gg.responderMarker = function (f, latlng) {
    const p = f.properties;
    const busy = p.status !== "available";
    const html = "<div class='resp " + (busy ? "busy" : "free") + "'>" + esc(p.icon) + "</div>";
    return L.marker(latlng, {icon: L.divIcon({html: html, className: "resp-wrap", iconSize: [30, 30], iconAnchor: [15, 15]}), zIndexOffset: 500})
      .bindTooltip(() => esc(p.name) + " · " + esc(p.typeName) + " · " + esc(p.statusName), {className: "dark-tip"});
  };
  gg.responderCluster = function (f, latlng) {
    const html = "<div class='resp group'>" + f.properties.point_count_abbreviated + "</div>";
    return L.marker(latlng, {icon: L.divIcon({html: html, className: "resp-wrap", iconSize: [34, 34], iconAnchor: [17, 17]}), zIndexOffset: 400});
  };
  gg.dispatchStyle = function () { return {color: "#fb923c", weight: 3, dashArray: "10 8", opacity: 0.95}; };

  // ---- panels rendered on the server as HTML (dashboard/markup.py) ----------------------------
  gg.fillPanels = function (panels) {
    Object.entries(panels || {}).forEach(function ([id, markup]) {
      const el = document.getElementById(id);
      if (el && el._ggMarkup !== markup) { el.innerHTML = markup; el._ggMarkup = markup; }
    });
    return window.dash_clientside.no_update;
  };

  // ---- page state, URL, live badge ------------------------------------------------------------
  gg.reduceState = function (win, start, end, cats, overlays, click, pick, state, key, names) {
    const nu = window.dash_clientside.no_update;
    const trig = (window.dash_clientside.callback_context.triggered || []).map((t) => t.prop_id.split(".")[0]);
    if (!state || !key || !trig.length) return [nu, nu];
    const s = Object.assign({}, state);
    const t = trig[0];
    if (t === "cmd-win") s.win = win;
    else if (t === "cmd-range") Object.assign(s, {win: "custom", from: start, to: end});
    else if (t === "cmd-cats") s.cats = (cats || []).slice().sort();
    else if (t === "cmd-layers") s.layers = (overlays || []).filter((n) => n in names).map((n) => names[n]);
    else if (t === "cmd-bounds" && click) s.unit = click.properties.code;
    else if (t === "cmd-pick" && pick) s.unit = pick.code;  // a ranking row or breadcrumb
    else return [nu, nu];
    const k = {};  // the fetch key has the fields command.query_key gave the first one
    Object.keys(key).forEach((name) => { k[name] = s[name] === undefined ? null : s[name]; });
    return [s, JSON.stringify(k) === JSON.stringify(key) ? nu : k];
  };
  // Ranking rows and breadcrumbs carry data-code; one delegated handler turns a click into the
  // cmd-pick store (cheaper than a pattern-matching input per row for Dash to re-index).
  document.addEventListener("click", function (e) {
    const el = e.target.closest && e.target.closest(".pick[data-code]");
    if (!el || !window.dash_clientside || !window.dash_clientside.set_props) return;
    window.dash_clientside.set_props("cmd-pick", {data: {code: el.dataset.code, at: Date.now()}});
  });
  gg.syncUrl = function (state) {
    if (!state) return window.dash_clientside.no_update;
    const q = new URLSearchParams();
    if (state.unit) q.set("unit", state.unit);
    if (state.win && state.win !== "today") q.set("win", state.win);
    if (state.win === "custom") { if (state.from) q.set("from", state.from); if (state.to) q.set("to", state.to); }
    q.set("layers", (state.layers || []).join(","));
    if (state.cats && state.cats.length) q.set("cats", state.cats.join(","));
    if (state.lang === "en") q.set("lang", "en");
    if (state.wall) { q.set("wall", "1"); q.set("cycle", String(state.cycle)); }
    const url = window.location.pathname + "?" + q.toString();
    if (url !== window.location.pathname + window.location.search) window.history.replaceState(null, "", url);
    const other = new URLSearchParams(q);
    if (state.lang === "en") other.delete("lang"); else other.set("lang", "en");
    return window.location.pathname + "?" + other.toString();
  };
  gg.liveBadge = function (live, n, text) {
    const trig = (window.dash_clientside.callback_context.triggered || []).map((t) => t.prop_id);
    const now = Date.now();
    if (trig.includes("cmd-live.data") && live) {
      gg._liveOk = live.ok ? now : gg._liveOk; gg._dbDown = !live.ok;
    }
    if (gg._liveOk == null) gg._liveOk = now;
    const age = Math.round((now - gg._liveOk) / 1000);
    if (gg._dbDown) return ["⚠ " + text.down, "live-badge stale"];
    if (age > 3) return ["⚠ " + text.stale.replace("{s}", age), "live-badge stale"];
    return ["● " + text.ok, "live-badge ok"];
  };

  // ---- playback and wall mode -------------------------------------------------------------------
  gg.playback = function (nClicks, nTick, value, max, disabled, text) {
    const trig = (window.dash_clientside.callback_context.triggered || []).map((t) => t.prop_id);
    if (trig.includes("cmd-play.n_clicks")) {
      if (disabled) return [value >= max ? 0 : value, false, text.pause];
      return [value, true, text.play];
    }
    const next = Math.min(max, value + 1);
    return next >= max ? [max, true, text.play] : [next, false, text.pause];
  };
  gg.eventHideout = function (style, value, max, scene, text) {
    if (!style) return [window.dash_clientside.no_update, ""];
    const h = Object.assign({}, style, {mode: (scene && scene.mode) || "all"});
    if (value == null || value >= max) { h.cutoff = null; return [h, text.live]; }
    h.cutoff = style.start + (value + 1) * style.stepS;
    return [h, text.until.replace("{t}", fmtTime(h.cutoff, style))];
  };
  gg.heatHideout = function (style, value, max) {
    return {step: value == null || value >= max ? null : value, steps: style ? style.steps : null};
  };
  function boundsOf(features, keep) {
    let s = 90, w = 180, n = -90, e = -180, any = false;
    for (const f of (features || [])) {
      if (!keep(f)) continue;
      const [x, y] = f.geometry.coordinates;
      s = Math.min(s, y); n = Math.max(n, y); w = Math.min(w, x); e = Math.max(e, x); any = true;
    }
    if (!any) return null;
    const pad = Math.max(0.005, (n - s) * 0.1, (e - w) * 0.1);
    return [[s - pad, w - pad], [n + pad, e + pad]];
  }
  gg.SCENES = ["overview", "hotspots", "overdue", "dispatch"];
  gg.wallScene = function (n, scenes, events, responders) {
    if (!scenes) return [window.dash_clientside.no_update, window.dash_clientside.no_update, ""];
    const name = gg.SCENES[(n || 0) % gg.SCENES.length];
    const now = (gg._events && gg._events.base && gg._events.base.asof) || Date.now() / 1000;
    let bounds = scenes.overview, mode = "all";
    if (name === "hotspots") bounds = scenes.hotspots;
    if (name === "overdue") { mode = "overdue"; bounds = boundsOf(events && events.features, (f) => gg.isOverdue(f.properties, now)) || bounds; }
    if (name === "dispatch") {
      mode = "dispatched";
      bounds = boundsOf(responders && responders.features, (f) => f.geometry.type === "Point" && f.properties.status !== "available") || bounds;
    }
    gg.scene = name;
    return [{bounds: bounds, transition: "flyToBounds"}, {mode: mode, name: name}, scenes.titles[name]];
  };
})();
