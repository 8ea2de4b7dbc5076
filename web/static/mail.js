// The mail page (the seed's "Mail" tab) over the JSON API: folders, the
// list, the reading pane, compose, and arrival notices from the event
// stream with polling at the user's interval as the fall-back.
"use strict";

(function () {
  const root = document.getElementById("mail");
  if (!root) return;
  const t = root.dataset;
  const csrf = t.csrf;
  const $ = (id) => document.getElementById(id);
  let current = "INBOX";
  let selected = 0;
  let nextBefore = "";
  let pollTimer = 0;

  async function api(method, path, body) {
    const opts = { method, credentials: "same-origin", headers: { "X-CSRF-Token": csrf } };
    if (body instanceof FormData) {
      opts.body = body; // multipart/form-data, with its boundary
    } else if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const resp = await fetch(path, opts);
    const data = resp.status === 204 ? null : await resp.json();
    if (!resp.ok) throw new Error(data && data.error ? data.error : resp.statusText);
    return { data, resp };
  }

  function el(tag, cls, text) {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }

  async function loadFolders() {
    const { data } = await api("GET", "/api/v1/mailboxes");
    const ul = $("folders");
    ul.replaceChildren();
    // INBOX, Sent, Drafts, Trash, then the user's own by name.
    const rank = (n) => { const i = ["INBOX", "Sent", "Drafts", "Trash"].indexOf(n); return i < 0 ? 4 : i; };
    data.sort((a, b) => rank(a.name) - rank(b.name) || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const b of data) {
      const li = el("li");
      const a = el("a", "", b.name);
      a.href = "#" + encodeURIComponent(b.name);
      a.dataset.mailbox = b.name;
      if (b.name === "INBOX") {
        a.textContent = "INBOX (" + b.unseen + ")";
        if (b.unseen > 0) a.classList.add("unread");
      }
      if (b.name === "Sent" && b.pending_sent > 0) a.classList.add("unread");
      if (b.name === current) a.setAttribute("aria-current", "true");
      li.appendChild(a);
      ul.appendChild(li);
    }
  }

  function row(m) {
    const tr = el("tr");
    tr.dataset.uid = m.uid;
    if (!m.seen) tr.classList.add("unread");
    if (m.uid === selected) tr.classList.add("selected");
    const who = current === "Sent" || current === "Drafts" ? (m.to || []).join(", ") : m.from;
    tr.appendChild(el("td", "", who));
    const subj = el("td", "subj");
    const a = el("a", "", m.subject || "(no subject)");
    a.href = "#";
    a.className = "open";
    subj.appendChild(a);
    if (m.important) subj.prepend(el("span", "flag", "! "));
    tr.appendChild(subj);
    tr.appendChild(el("td", "", new Date(m.date).toLocaleString()));
    const nd = el("td", "nd-col");
    if (m.not_delivered) nd.textContent = m.not_delivered.join(", ");
    if (m.failed && m.failed.length) nd.appendChild(failedLink(m));
    tr.appendChild(nd);
    return tr;
  }

  // A failed recipient links to the queue page showing that entry.
  function failedLink(m) {
    const span = el("span", "failed", (m.not_delivered && m.not_delivered.length ? " · " : "") + t.tFailed + ": ");
    const a = el("a", "queue-link", m.failed.join(", "));
    a.href = m.queue_link;
    a.title = t.tShowInQueue;
    span.appendChild(a);
    return span;
  }

  let generation = 0;
  async function loadList(more) {
    const mine = ++generation;
    const box = current;
    let path = "/api/v1/messages?mailbox=" + encodeURIComponent(box);
    if (more && nextBefore) path += "&before=" + nextBefore;
    const { data, resp } = await api("GET", path);
    // A later load (another folder, a newer event) wins.
    if (mine !== generation) return;
    $("messages").dataset.mailbox = box;
    const body = $("messages").tBodies[0];
    if (!more) body.replaceChildren();
    for (const m of data) body.appendChild(row(m));
    if (!more && data.length === 0) {
      const tr = el("tr", "empty");
      const td = el("td", "", t.tEmpty);
      td.colSpan = 4;
      tr.appendChild(td);
      body.appendChild(tr);
    }
    nextBefore = resp.headers.get("X-Next-Before") || "";
    $("older").hidden = !nextBefore;
    root.classList.toggle("in-sent", current === "Sent");
  }

  async function refresh() {
    try {
      await loadFolders();
      await loadList(false);
    } catch (e) {
      console.warn("mail: refresh failed:", e.message);
    }
  }

  async function openMessage(uid, images) {
    selected = uid;
    let path = "/api/v1/messages/" + uid + "?mailbox=" + encodeURIComponent(current);
    if (images) path += "&images=allow";
    const { data: m } = await api("GET", path);
    if (current === "Drafts") {
      openCompose(m);
      return;
    }
    const r = $("reader");
    r.replaceChildren();
    r.appendChild(el("h2", "", m.subject || "(no subject)"));
    const meta = el("p", "meta", m.from + " → " + (m.to || []).concat(m.cc || []).join(", ") + " · " + new Date(m.date).toLocaleString());
    r.appendChild(meta);
    if (m.not_delivered && m.not_delivered.length) r.appendChild(el("p", "nd", t.tNotDelivered + ": " + m.not_delivered.join(", ")));
    if (m.failed && m.failed.length) {
      const p = el("p", "nd");
      p.appendChild(failedLink(m));
      p.appendChild(document.createTextNode(" "));
      const q = el("a", "queue-link", t.tShowInQueue);
      q.href = m.queue_link;
      p.appendChild(q);
      r.appendChild(p);
    }
    if (m.remote_images > 0) {
      const b = el("button", "", t.tImages + " (" + m.remote_images + ")");
      b.type = "button";
      b.addEventListener("click", () => openMessage(uid, true));
      r.appendChild(b);
    }
    if (m.html) {
      const d = el("div", "html-body");
      // Sanitised on the server (bluemonday); the CSP runs no inline script.
      d.innerHTML = m.html;
      r.appendChild(d);
    } else {
      r.appendChild(el("pre", "body", m.text));
    }
    if (m.attachments.length) {
      r.appendChild(el("h3", "", t.tAttachments));
      const ul = el("ul", "attachments");
      for (const a of m.attachments) {
        const li = el("li");
        const link = el("a", "", a.name + " (" + a.type + ", " + a.size + " B)");
        link.href = "/api/v1/messages/" + uid + "/attachments/" + a.index + "?mailbox=" + encodeURIComponent(current);
        link.setAttribute("download", a.name);
        li.appendChild(link);
        ul.appendChild(li);
      }
      r.appendChild(ul);
    }
    await refresh();
  }

  // Compose.
  const dlg = $("compose");
  const form = $("compose-form");
  const kept = $("kept-attachments");
  function openCompose(m) {
    form.reset();
    kept.replaceChildren();
    $("compose-error").hidden = true;
    if (m) {
      // A reopened draft keeps its attachments unless unticked.
      for (const a of m.attachments || []) {
        const li = el("li");
        const label = el("label");
        const box = el("input");
        box.type = "checkbox";
        box.name = "keep_attachments";
        box.value = a.index;
        box.checked = true;
        label.appendChild(box);
        label.appendChild(document.createTextNode(" " + a.name + " (" + a.size + " B)"));
        li.appendChild(label);
        kept.appendChild(li);
      }
      form.to.value = (m.to || []).join(", ");
      form.cc.value = (m.cc || []).join(", ");
      form.subject.value = m.subject || "";
      form.text.value = (m.text || "").replace(/\r\n/g, "\n").replace(/\n$/, "");
      form.importance.value = m.important ? "high" : "normal";
      form.draft_uid.value = m.uid;
    }
    dlg.showModal();
    form.to.focus();
  }
  // The form as multipart/form-data: the fields by name, the files as
  // attachment parts, the draft's kept attachments by index.
  function composed() {
    const fd = new FormData();
    for (const name of ["to", "cc", "bcc", "subject", "text", "importance"]) fd.append(name, form[name].value);
    if (form.draft_uid.value) fd.append("draft_uid", form.draft_uid.value);
    for (const box of kept.querySelectorAll("input[name=keep_attachments]:checked")) fd.append("keep_attachments", box.value);
    for (const f of form.attachment.files) fd.append("attachment", f, f.name);
    return fd;
  }
  async function submit(path, done) {
    try {
      const { data } = await api("POST", path, composed());
      if (path === "/api/v1/drafts") form.draft_uid.value = data.uid;
      dlg.close();
      popup(done);
      await refresh();
    } catch (e) {
      const p = $("compose-error");
      p.textContent = e.message;
      p.hidden = false;
    }
  }
  form.addEventListener("submit", (ev) => { ev.preventDefault(); submit("/api/v1/send", t.tSentOk); });
  form.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      submit("/api/v1/send", t.tSentOk);
    }
  });
  $("save-draft").addEventListener("click", () => submit("/api/v1/drafts", t.tSaved));
  $("compose-close").addEventListener("click", () => dlg.close());
  $("compose-open").addEventListener("click", () => openCompose(null));

  // Notices.
  let popupTimer = 0;
  function popup(text) {
    const p = $("notice-popup");
    p.textContent = text;
    p.hidden = false;
    window.clearTimeout(popupTimer);
    popupTimer = window.setTimeout(() => { p.hidden = true; }, 8000);
  }
  function notice(ev) {
    if (ev.important) {
      $("notice-modal-text").textContent = ev.subject + " — " + ev.from;
      const d = $("notice-modal");
      if (!d.open) d.showModal();
    } else {
      popup(t.tNewMail + ": " + ev.subject + " — " + ev.from);
    }
  }

  // Folders, rows, paging.
  $("folders").addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-mailbox]");
    if (!a) return;
    ev.preventDefault();
    current = a.dataset.mailbox;
    selected = 0;
    $("reader").replaceChildren();
    refresh();
  });
  $("messages").addEventListener("click", (ev) => {
    if (ev.target.closest("a.queue-link")) return; // to the queue page
    const tr = ev.target.closest("tr[data-uid]");
    if (!tr) return;
    ev.preventDefault();
    openMessage(parseInt(tr.dataset.uid, 10), false).catch((e) => console.warn("mail: open failed:", e.message));
  });
  $("older").addEventListener("click", () => loadList(true));
  $("check-mail").addEventListener("click", refresh);

  // The reading pane, kept on the server.
  $("pane-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const btn = $("pane-toggle");
    const pane = btn.value;
    const resp = await fetch("/mail/pane", { method: "POST", credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf, "Content-Type": "application/x-www-form-urlencoded" }, body: "pane=" + pane });
    if (!resp.ok) return;
    root.classList.toggle("pane-right", pane === "right");
    btn.value = pane === "right" ? "below" : "right";
    btn.textContent = btn.dataset[pane === "right" ? "below" : "right"] || btn.textContent;
  });

  // The check interval, stored on the server.
  function schedule(seconds) {
    window.clearInterval(pollTimer);
    pollTimer = window.setInterval(poll, Math.max(10, seconds) * 1000);
  }
  let lastInbox = -1;
  let events = null;
  async function poll() {
    await refresh();
    // Without the event stream, a grown INBOX is announced from here.
    if (events && events.readyState === EventSource.OPEN) return;
    try {
      const { data } = await api("GET", "/api/v1/messages?mailbox=INBOX&limit=1");
      if (data.length && lastInbox >= 0 && data[0].uid > lastInbox && !data[0].seen) notice({ subject: data[0].subject, from: data[0].from, important: data[0].important });
      if (data.length) lastInbox = data[0].uid;
    } catch (e) {
      console.warn("mail: poll failed:", e.message);
    }
  }
  $("poll-interval").addEventListener("change", async (ev) => {
    const v = parseInt(ev.target.value, 10);
    try {
      const { data } = await api("PUT", "/api/v1/settings", { poll_interval: v });
      schedule(data.poll_interval);
    } catch (e) {
      popup(e.message);
    }
  });

  async function start() {
    const { data: s } = await api("GET", "/api/v1/session");
    $("poll-interval").value = s.poll_interval;
    schedule(s.poll_interval);
    api("GET", "/api/v1/addresses").then(({ data }) => {
      const dl = $("local-users");
      for (const a of data) {
        const o = document.createElement("option");
        o.value = a;
        dl.appendChild(o);
      }
    }).catch(() => {});
    await refresh();
    const first = $("messages").tBodies[0].querySelector("tr[data-uid]");
    if (current === "INBOX" && first) lastInbox = parseInt(first.dataset.uid, 10);
    else lastInbox = 0;
  }

  if (window.EventSource) {
    events = new EventSource("/api/v1/events");
    events.addEventListener("mail", (ev) => {
      const data = JSON.parse(ev.data);
      if (data.mailbox === "INBOX") {
        lastInbox = Math.max(lastInbox, data.uid);
        if (!data.alert) notice(data);
      }
      refresh();
    });
    events.addEventListener("sent", () => refresh());
    window.addEventListener("pagehide", () => events.close());
  }
  start().catch((e) => console.warn("mail: start failed:", e.message));
})();
