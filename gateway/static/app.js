// reviewstream chat page: plain JavaScript, no build step, nothing loaded from elsewhere.
// Every piece of user or server text goes through textContent: never HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_MESSAGES = 200;
  const KEY_STORAGE = "reviewstream.key";

  const state = {
    key: sessionStorage.getItem(KEY_STORAGE) || "",
    ws: null,
    session: null,
    attempt: 0,
    nextId: 1,
    reviews: new Map(), // client id -> review entry
    feedback: new Map(), // client id -> feedback entry
    explains: new Map(), // client id -> explanation entry
    lastStats: null,
    model: null, // what the gateway says is deployed: {state, model_name, version}
    alerts: [], // newest change first, one entry per alert (fingerprint and start)
    driftAt: 0, // when the drift panel was last asked for (ms)
    driftTimer: null,
    fleetTimer: null,
  };

  // --- small DOM helpers -------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    return node;
  }

  function pct(x) {
    return x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`;
  }

  function appendMessage(node) {
    const list = $("messages");
    const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 80;
    list.append(node);
    while (list.children.length > MAX_MESSAGES) list.firstElementChild.remove();
    if (atBottom) list.scrollTop = list.scrollHeight;
  }

  function systemMessage(text) {
    appendMessage(el("li", "msg system", text));
  }

  // --- connection --------------------------------------------------------------------------

  function setConnection(kind, text) {
    $("conn").className = `conn conn-${kind}`;
    $("conn-text").textContent = text;
    document.body.dataset.connection = kind;
  }

  async function connect() {
    setConnection("connecting", state.attempt ? "reconnecting…" : "connecting…");
    let session;
    try {
      const headers = state.key ? { "X-API-Key": state.key } : {};
      const response = await fetch("/v1/session", { headers, cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        const body = await response.json().catch(() => ({}));
        askForKey(body.message || `refused (${response.status})`);
        return;
      }
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      session = await response.json();
    } catch (error) {
      scheduleReconnect();
      return;
    }
    state.session = session;
    applySession(session);
    openSocket();
  }

  function openSocket() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const protocols = ["reviewstream"];
    if (state.key) protocols.push(`bearer.${state.key}`);
    const ws = new WebSocket(`${scheme}//${location.host}/v1/ws`, protocols);
    state.ws = ws;
    let keepAlive = null;
    ws.addEventListener("open", () => {
      state.attempt = 0;
      setConnection("online", "connected");
      // The gateway closes a socket that says nothing for its idle timeout (its hello says
      // how long); a ping at a third of it keeps an idle page connected.
      keepAlive = setInterval(() => {
        if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: "ping", id: "keepalive" }));
      }, Math.max(1000, (state.idleTimeoutS || 120) * 1000 / 3));
      for (const review of state.reviews.values()) {
        if (review.status === "waiting") sendReview(review);
      }
    });
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch (error) {
        return;
      }
      handle(message);
    });
    ws.addEventListener("close", () => {
      if (keepAlive !== null) clearInterval(keepAlive);
      if (state.ws !== ws) return;
      state.ws = null;
      for (const review of state.reviews.values()) {
        if (review.status === "sending" || review.status === "pending") {
          fail(review, "connection lost before the reply came");
        }
      }
      for (const fb of state.feedback.values()) {
        if (fb.status === "sending") feedbackFailed(fb, "connection lost; try again");
      }
      for (const entry of state.explains.values()) explainFailed(entry, "connection lost; try again");
      state.explains.clear();
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    state.attempt += 1;
    const base = Math.min(8000, 500 * 2 ** Math.min(state.attempt - 1, 4));
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    setConnection("offline", `offline, retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    setTimeout(connect, delay);
  }

  function connected() {
    return state.ws !== null && state.ws.readyState === WebSocket.OPEN;
  }

  function askForKey(reason) {
    setConnection("offline", "API key needed");
    $("key-form").hidden = false;
    $("key-error").textContent = state.key ? reason : "";
    $("key-input").focus();
  }

  function applySession(session) {
    $("key-form").hidden = true;
    const banner = $("banner");
    if (session.open_mode) {
      banner.textContent =
        "Open mode: authentication is off (local development). Every visitor is an admin.";
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
    const canClassify = session.role === "client" || session.role === "admin";
    $("text").disabled = !canClassify;
    $("send").disabled = !canClassify;
    $("label").disabled = !canClassify;
    $("text").placeholder = canClassify
      ? "The pasta was fresh and the staff were lovely…"
      : "This key is a viewer key: statistics only.";
    updateCount();
    $("fleet-panel").hidden = session.role !== "admin";
    if (session.role === "admin" && !state.fleetTimer) fetchFleet();
  }

  // --- reviews -----------------------------------------------------------------------------

  function newReview(text, label) {
    const id = `c${state.nextId++}`;
    const node = el("li", "msg user");
    node.dataset.id = id;
    node.append(el("div", "body", text)); // the review as text, never as HTML
    const status = el("div", "status");
    node.append(status);
    // One key per review, kept across Retry: a retry gets the first answer, counted once.
    const key = crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}`;
    const review = { id, text, label, key, node, status: "new", timer: null };
    state.reviews.set(id, review);
    appendMessage(node);
    return review;
  }

  function setStatus(review, status, text, retry) {
    review.status = status;
    review.node.classList.toggle("pending", status === "sending" || status === "pending" || status === "waiting");
    review.node.classList.toggle("failed", status === "failed");
    review.node.classList.toggle("done", status === "done");
    review.node.dataset.status = status;
    const line = review.node.querySelector(".status");
    line.replaceChildren();
    if (review.label !== null && status !== "failed") {
      line.append(el("span", "tag", review.label === 1 ? "my label: positive" : "my label: negative"));
    }
    line.append(el("span", "status-text", text));
    if (retry) {
      const button = el("button", "retry", "Retry");
      button.type = "button";
      button.addEventListener("click", () => sendReview(review));
      line.append(button);
    }
  }

  function fail(review, reason) {
    clearTimeout(review.timer);
    setStatus(review, "failed", `failed: ${reason}`, true);
  }

  function sendReview(review) {
    if (!connected()) {
      setStatus(review, "waiting", "waiting for the connection…");
      return;
    }
    setStatus(review, "sending", "sending…");
    state.ws.send(JSON.stringify({
      type: "classify", id: review.id, text: review.text, label: review.label, idempotency_key: review.key,
    }));
    clearTimeout(review.timer);
    const patience = ((state.session && state.session.reply_timeout_s) || 10) + 5;
    review.timer = setTimeout(() => {
      if (review.status === "sending" || review.status === "pending") fail(review, "no answer from the gateway");
    }, patience * 1000);
  }

  function showPrediction(review, p) {
    clearTimeout(review.timer);
    setStatus(review, "done", "classified");
    const node = el("li", "msg bot");
    node.dataset.requestId = p.request_id;
    const head = el("div", "head");
    head.append(el("span", `verdict ${p.verdict}`, p.verdict === "positive" ? "Positive" : "Negative"));
    node.append(head);
    const bar = el("div", `bar ${p.verdict}`);
    const fill = el("span");
    fill.style.width = `${(100 * p.confidence).toFixed(1)}%`;
    bar.append(fill);
    node.append(bar);
    node.append(el("div", "meta", `confidence ${pct(p.confidence)} · ${p.model_name} v${p.model_version}`));
    if (review.label !== null) {
      // The label sent with the review is feedback already: say whether the model agreed.
      const said = review.label === 1 ? "positive" : "negative";
      const agrees = review.label === p.label;
      node.append(el("div", `agreement ${agrees ? "agrees" : "disagrees"}`,
        `you said ${said} · model: ${p.verdict} ${agrees ? "(agrees)" : "(disagrees)"}`));
    }
    const actions = el("div", "actions");
    const agree = el("button", "agree", "I agree");
    const wrong = el("button", "wrong", "That's wrong");
    for (const button of [agree, wrong]) button.type = "button";
    agree.addEventListener("click", () => sendFeedback(p, p.label, actions, agree));
    wrong.addEventListener("click", () => sendFeedback(p, 1 - p.label, actions, wrong));
    const why = el("button", "why", "Why?");
    why.type = "button";
    why.title = "Show which words decided the answer";
    why.addEventListener("click", () => askWhy(review.text, node, why));
    actions.append(agree, wrong, why);
    node.append(actions);
    appendMessage(node);
  }

  // --- explanations ------------------------------------------------------------------------

  function askWhy(text, bubble, button) {
    const id = `e${state.nextId++}`;
    const box = bubble.querySelector(".explanation") || el("div", "explanation");
    box.replaceChildren(el("div", "why-note", "asking the model why…"));
    bubble.append(box);
    if (!connected()) {
      box.replaceChildren(el("div", "why-note fb-error", "not connected; try again when the status is green"));
      return;
    }
    button.disabled = true;
    state.explains.set(id, { box, button, text });
    state.ws.send(JSON.stringify({ type: "explain", id, text }));
  }

  function signed(weight) {
    return `${weight >= 0 ? "+" : "−"}${Math.abs(weight).toFixed(2)}`;
  }

  // The review with each word marked by its push: green and underlined towards positive, red
  // and struck-through dotted towards negative (shape as well as colour), stronger = darker;
  // each word's weight is in its title and aria-label, and the strongest are listed in words.
  function showExplanation(entry, message) {
    entry.button.disabled = false;
    const e = message.explanation;
    const review = entry.text;
    const strongest = Math.max(1e-9, ...e.words.map((w) => Math.abs(w.weight)));
    const para = el("p", "highlighted");
    let at = 0;
    for (const w of e.words) {
      if (w.start < at) continue;
      para.append(document.createTextNode(review.slice(at, w.start)));
      const side = w.weight >= 0 ? "pos" : "neg";
      const mark = el("mark", `w ${side}`, review.slice(w.start, w.end));
      mark.style.setProperty("--strength", (Math.abs(w.weight) / strongest).toFixed(3));
      mark.dataset.weight = w.weight.toFixed(4);
      const towards = w.weight >= 0 ? "towards positive" : "towards negative";
      mark.title = `${signed(w.weight)} ${towards}`;
      mark.setAttribute("aria-label", `${w.word}: ${signed(w.weight)} ${towards}`);
      para.append(mark);
      at = w.end;
    }
    para.append(document.createTextNode(review.slice(at)));
    const ranked = [...e.words].sort((a, b) => b.weight - a.weight);
    const top = (words) => words.map((w) => `${w.word} (${signed(w.weight)})`).join(", ") || "none";
    const legend = el("div", "legend");
    legend.append(el("span", "w pos", "towards positive"), el("span", "w neg", "towards negative"),
      el("span", "legend-note", "darker = stronger"));
    const method = e.method === "ngram_sum" ? "exact word shares" : "masking each word";
    entry.box.replaceChildren(
      el("div", "why-head", `Why ${message.verdict}? (${message.model_name} v${message.model_version}, ${method})`),
      para,
      legend,
      el("div", "why-top", `Most positive: ${top(ranked.filter((w) => w.weight > 0).slice(0, 3))}`),
      el("div", "why-top", `Most negative: ${top(ranked.filter((w) => w.weight < 0).reverse().slice(0, 3))}`),
    );
  }

  function explainFailed(entry, reason) {
    entry.button.disabled = false;
    entry.box.replaceChildren(el("div", "why-note fb-error", `explanation failed: ${reason}`));
  }

  // --- feedback ----------------------------------------------------------------------------

  function sendFeedback(prediction, label, actions, chosen) {
    const id = `f${state.nextId++}`;
    const fb = { id, label, actions, prediction, status: "sending" };
    state.feedback.set(id, fb);
    for (const button of actions.querySelectorAll("button")) {
      button.disabled = true;
      button.classList.toggle("chosen", button === chosen);
    }
    const note = actions.querySelector(".fb-note") || el("span", "fb-note");
    note.className = "fb-note";
    note.textContent = "sending feedback…";
    actions.append(note);
    if (!connected()) {
      feedbackFailed(fb, "not connected; try again when the status is green");
      return;
    }
    state.ws.send(JSON.stringify({ type: "feedback", id, request_id: prediction.request_id, label }));
  }

  function feedbackDone(fb) {
    fb.status = "done";
    const note = fb.actions.querySelector(".fb-note");
    note.className = "fb-note thanks";
    note.textContent = `Thanks, recorded as ${fb.label === 1 ? "positive" : "negative"}.`;
  }

  function feedbackFailed(fb, reason) {
    fb.status = "failed";
    for (const button of fb.actions.querySelectorAll("button")) button.disabled = false;
    const note = fb.actions.querySelector(".fb-note");
    note.className = "fb-note fb-error";
    note.textContent = `feedback failed: ${reason}`;
  }

  // --- messages from the gateway -----------------------------------------------------------

  function handle(message) {
    switch (message.type) {
      case "hello":
        if (typeof message.idle_timeout_s === "number") state.idleTimeoutS = message.idle_timeout_s;
        break;
      case "accepted": {
        const review = state.reviews.get(message.id);
        if (review && review.status === "sending") {
          review.requestId = message.request_id;
          setStatus(review, "pending", "classifying…");
        }
        break;
      }
      case "prediction": {
        const review = state.reviews.get(message.id);
        if (review && review.status !== "done") showPrediction(review, message);
        break;
      }
      case "explanation": {
        const entry = state.explains.get(message.id);
        state.explains.delete(message.id);
        if (entry) showExplanation(entry, message);
        break;
      }
      case "feedback_ack": {
        const fb = state.feedback.get(message.id);
        if (fb) feedbackDone(fb);
        break;
      }
      case "error": {
        const review = state.reviews.get(message.id);
        const fb = state.feedback.get(message.id);
        const why = state.explains.get(message.id);
        state.explains.delete(message.id);
        if (review) fail(review, message.message);
        else if (fb) feedbackFailed(fb, message.message);
        else if (why) explainFailed(why, message.message);
        else systemMessage(`The gateway says: ${message.message}`);
        break;
      }
      case "stats":
        renderStats(message.stats);
        refreshDrift();
        break;
      case "model":
        showModel(message);
        break;
      case "alerts":
        state.alerts = message.alerts;
        renderAlerts();
        break;
      case "alert":
        addAlert(message);
        break;
      default:
        break;
    }
  }

  // --- drift ------------------------------------------------------------------------------

  const DRIFT_EVERY_MS = 5000;
  const PSI_ALARM = 0.15;
  const FEATURE_NAMES = {
    confidence: "confidence", positive: "positive share", length: "review length",
    unknown_share: "unknown words", accuracy: "live accuracy",
  };

  // Asked again at most every DRIFT_EVERY_MS, and always once after the last stats message
  // (a trailing call), so the panel never stays behind the numbers.
  function refreshDrift() {
    if (state.driftTimer) return;
    const wait = Math.max(0, state.driftAt + DRIFT_EVERY_MS - Date.now());
    state.driftTimer = setTimeout(fetchDrift, wait);
  }

  async function fetchDrift() {
    state.driftTimer = null;
    state.driftAt = Date.now();
    try {
      const headers = state.key ? { "X-API-Key": state.key } : {};
      const response = await fetch("/v1/stats/drift?minutes=60", { headers, cache: "no-store" });
      if (response.ok) renderDrift(await response.json());
      const shadow = await fetch("/v1/stats/shadow", { headers, cache: "no-store" });
      if (shadow.ok) renderShadow(await shadow.json());
    } catch (error) {
      // the next stats message asks again
    }
  }

  // One row per challenger version and the production version that answered the same
  // reviews: side by side, agreement and each one's accuracy on the same labelled reviews.
  function renderShadow(shadow) {
    if (!shadow.comparisons.length) return;
    const share = (v) => (v === null ? "–" : pct(v));
    const rows = shadow.comparisons.map((c) => {
      const row = el("tr");
      row.dataset.challenger = c.challenger_version;
      row.append(el("td", "", `v${c.challenger_version} vs v${c.production_version}`),
        el("td", "", String(c.compared)), el("td", "", share(c.agreement)),
        el("td", "", String(c.labelled)), el("td", "challenger", share(c.challenger_accuracy)),
        el("td", "production", share(c.production_accuracy)));
      return row;
    });
    document.querySelector("#shadow tbody").replaceChildren(...rows);
  }

  // One row per feature of the newest version checked: its latest value and state in words,
  // and a line of its checks over the last hour with the alarm threshold dashed and each
  // alarming check drawn as a red square.
  function renderDrift(drift) {
    const box = $("drift");
    if (!drift.versions.length) return;
    const newest = (v) => Math.max(...v.latest.map((p) => Date.parse(p.checked_at)));
    const version = drift.versions.reduce((a, b) => (newest(a) >= newest(b) ? a : b));
    $("drift-version").textContent = `v${version.model_version}${version.alarm ? " · alarm" : ""}`;
    const rows = [];
    for (const latest of version.latest) {
      const points = drift.checks.filter((c) => c.model_version === version.model_version && c.feature === latest.feature);
      const row = el("div", `drift-row ${latest.alarm ? "alarm" : "ok"}`);
      row.dataset.feature = latest.feature;
      const value = latest.feature === "accuracy" ? pct(latest.score) : `PSI ${latest.score.toFixed(2)}`;
      row.append(el("span", "drift-name", FEATURE_NAMES[latest.feature] || latest.feature),
        el("span", "drift-value", value),
        el("span", `drift-state ${latest.alarm ? "alarm" : "ok"}`, latest.alarm ? "alarm" : "ok"),
        driftLine(points, latest.feature));
      rows.push(row);
    }
    box.replaceChildren(...rows);
  }

  function driftLine(points, feature) {
    const W = 120, H = 24;
    const accuracy = feature === "accuracy";
    const top = accuracy ? 1 : Math.max(PSI_ALARM * 2, ...points.map((p) => p.score));
    const x = (i) => (points.length > 1 ? (i / (points.length - 1)) * (W - 4) + 2 : W / 2);
    const y = (v) => H - 2 - (Math.min(v, top) / top) * (H - 4);
    const line = svg("svg", { class: "drift-line", viewBox: `0 0 ${W} ${H}`, role: "img",
      "aria-label": `${FEATURE_NAMES[feature] || feature}: ${points.length} checks` });
    if (!accuracy) line.append(svg("line", { class: "threshold", x1: 0, x2: W, y1: y(PSI_ALARM), y2: y(PSI_ALARM) }));
    line.append(svg("polyline", { points: points.map((p, i) => `${x(i).toFixed(1)},${y(p.score).toFixed(1)}`).join(" ") }));
    points.forEach((p, i) => {
      if (p.alarm) line.append(svg("rect", { class: "alarm", x: x(i) - 2, y: y(p.score) - 2, width: 4, height: 4 }));
    });
    return line;
  }

  // --- the deployed model ------------------------------------------------------------------

  function showModel(model) {
    const before = state.model;
    state.model = model;
    document.body.dataset.model = model.state;
    const banner = $("model-banner");
    if (model.state === "none") {
      banner.textContent =
        "No model is deployed yet, so reviews cannot be classified. On its first start the " +
        "stack trains and promotes one by itself (about a minute); this message goes away then.";
      banner.hidden = false;
      return;
    }
    banner.hidden = true;
    if (model.state === "deployed" && before && before.state === "none") {
      systemMessage(`Model ${model.model_name} v${model.version} is deployed: write a review.`);
    }
  }

  // --- alerts ------------------------------------------------------------------------------

  const ALERTS_SHOWN = 10;

  function addAlert(alert) {
    const same = (a) => a.fingerprint === alert.fingerprint && a.starts_at === alert.starts_at;
    state.alerts = [alert, ...state.alerts.filter((a) => !same(a))];
    renderAlerts();
  }

  function renderAlerts() {
    const list = $("alerts");
    list.replaceChildren();
    if (!state.alerts.length) {
      list.append(el("li", "muted", "no alerts"));
      return;
    }
    for (const a of state.alerts.slice(0, ALERTS_SHOWN)) {
      // Firing in red, resolved in grey; the status is written too, not only coloured.
      const item = el("li", `alert ${a.status}`);
      const head = el("div", "alert-head");
      head.append(el("span", "alert-status", a.status), el("strong", "", a.name));
      const when = a.status === "resolved" && a.ends_at ? a.ends_at : a.starts_at;
      head.append(el("span", "muted", new Date(when).toLocaleTimeString()));
      item.append(head, el("div", "alert-summary", a.summary || a.description || ""));
      item.title = a.description || "";
      list.append(item);
    }
  }

  // --- fleet (admin keys only) ----------------------------------------------------------------

  const FLEET_EVERY_MS = 5000;

  // Polled while the page has an admin key: the workers' reports change on their heartbeat,
  // not on traffic, so the stats push is no clock for them.
  async function fetchFleet() {
    state.fleetTimer = null;
    try {
      const headers = state.key ? { "X-API-Key": state.key } : {};
      const response = await fetch("/v1/admin/fleet", { headers, cache: "no-store" });
      if (response.status === 401 || response.status === 403) {
        $("fleet-panel").hidden = true;
        return; // not an admin key (any more): stop asking
      }
      if (response.ok) renderFleet(await response.json());
    } catch (error) {
      // asked again below
    }
    state.fleetTimer = setTimeout(fetchFleet, FLEET_EVERY_MS);
  }

  function renderFleet(fleet) {
    const acks = fleet.models.filter((m) => m.version !== null).map((m) =>
      `${m.model_name}@${m.alias} v${m.version}: ${m.acknowledged ? "acknowledged" : `waiting for ${m.pending.length}`}`);
    $("fleet-summary").textContent = acks.length ? `(${acks.join("; ")})` : "";
    const body = $("fleet").querySelector("tbody");
    body.replaceChildren();
    if (!fleet.workers.length) {
      const row = el("tr");
      const cell = el("td", "muted", "no worker has reported yet");
      cell.colSpan = 7;
      row.append(cell);
      body.append(row);
      return;
    }
    for (const w of fleet.workers) {
      const row = el("tr", `fleet-row ${w.live ? w.state : "gone"}`);
      row.title = w.error || "";
      const state = w.live ? w.state : `${w.state} · gone`;
      row.append(el("td", "", w.worker_id), el("td", "fleet-state", state),
        el("td", "", w.version ? `v${w.version}` : "–"),
        el("td", "", w.wanted_version ? `v${w.wanted_version}` : "–"),
        el("td", "", String(w.load_attempts)),
        el("td", "", w.lag === null ? "?" : String(w.lag)),
        el("td", "muted", `${Math.round(w.seconds_since_report)}s ago`));
      body.append(row);
    }
  }

  // --- live statistics ---------------------------------------------------------------------

  function setNumber(id, text) {
    const node = $(id);
    if (node.textContent !== text) {
      node.textContent = text;
      const card = node.closest(".card");
      card.classList.remove("flash");
      void card.offsetWidth; // restart the animation
      card.classList.add("flash");
    }
  }

  function renderStats(stats) {
    state.lastStats = stats;
    const s = stats.summary;
    setNumber("s-total", s ? s.predictions.toLocaleString() : "–");
    setNumber("s-positive", s ? pct(s.positive_share) : "–");
    setNumber("s-labelled", s ? s.labelled.toLocaleString() : "–");
    setNumber("s-accuracy", s ? pct(s.accuracy) : "–");
    setNumber("s-with-label", s ? pct(s.with_label_share) : "–");
    setNumber("s-waiting", s ? s.feedback_waiting.toLocaleString() : "–");
    const body = $("models").tBodies[0];
    body.replaceChildren();
    const models = s ? s.models : [];
    if (!models.length) {
      const row = el("tr");
      const cell = el("td", "muted", "no predictions yet");
      cell.colSpan = 5;
      row.append(cell);
      body.append(row);
    }
    for (const m of models) {
      const row = el("tr");
      row.append(
        el("td", "", `v${m.model_version}`),
        el("td", "", m.predictions.toLocaleString()),
        el("td", "", pct(m.positive_share)),
        el("td", "", pct(m.with_label_share)),
        el("td", "", m.labelled ? `${pct(m.accuracy)} (${m.labelled})` : "–"),
      );
      row.title = m.model_name;
      body.append(row);
    }
    drawChart(stats.series || []);
    $("stats-updated").textContent = `updated ${new Date(stats.updated_at).toLocaleTimeString()}`;
    $("stats-note").textContent = stats.available ? "" : `statistics unavailable: ${stats.message}`;
  }

  function drawChart(series) {
    const chart = $("chart");
    chart.replaceChildren();
    const width = 320;
    const height = 120;
    const top = 12;
    const slots = 30;
    const minute = 60 * 1000;
    const end = Math.floor(Date.now() / minute) * minute;
    const byMinute = new Map();
    for (const point of series) {
      byMinute.set(Math.floor(Date.parse(point.window_start) / minute) * minute, point);
    }
    const points = [];
    for (let i = slots - 1; i >= 0; i -= 1) {
      const start = end - i * minute;
      const p = byMinute.get(start);
      points.push({ start, total: p ? p.predictions : 0, positives: p ? p.positives : 0 });
    }
    const max = Math.max(1, ...points.map((p) => p.total));
    const step = width / slots;
    const scale = (height - top) / max;
    chart.append(svg("line", { x1: 0, x2: width, y1: top, y2: top, class: "grid" }));
    const label = svg("text", { x: 3, y: 9, class: "axis" });
    label.textContent = `${max} / min`;
    const now = svg("text", { x: width - 3, y: 9, class: "axis", "text-anchor": "end" });
    now.textContent = "now";
    chart.append(label, now);
    points.forEach((p, i) => {
      const x = i * step + 1;
      const w = Math.max(1, step - 2);
      const pos = p.positives * scale;
      const neg = (p.total - p.positives) * scale;
      if (neg > 0) chart.append(svg("rect", { x, y: height - neg - pos, width: w, height: neg, class: "neg" }));
      if (pos > 0) chart.append(svg("rect", { x, y: height - pos, width: w, height: pos, class: "pos" }));
    });
  }

  // --- the composer ------------------------------------------------------------------------

  function updateCount() {
    const max = (state.session && state.session.max_text_chars) || 5000;
    const length = $("text").value.length;
    const count = $("count");
    count.textContent = length ? `${length} / ${max}` : "";
    count.classList.toggle("over", length > max);
  }

  function submit(event) {
    event.preventDefault();
    const text = $("text").value;
    if (!text.trim()) return;
    const picked = $("label").value;
    const review = newReview(text, picked === "" ? null : Number(picked));
    $("text").value = "";
    $("label").value = "";
    updateCount();
    sendReview(review);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("composer").addEventListener("submit", submit);
    $("text").addEventListener("input", updateCount);
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submit(event);
    });
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      state.key = $("key-input").value.trim();
      sessionStorage.setItem(KEY_STORAGE, state.key);
      $("key-input").value = "";
      connect();
    });
    setInterval(() => {
      if (state.lastStats) drawChart(state.lastStats.series || []);
    }, 15000);
    connect();
  });
})();
