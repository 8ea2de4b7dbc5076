// pochta's pages work without this file; it adds confirmations, live
// updates of the queue and the alert count, and entry bodies on demand.
// No inline script: the Content-Security-Policy allows only this file.
"use strict";

(function () {
  // Filters apply as soon as one changes.
  const filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach((s) => s.addEventListener("change", () => filters.submit()));
  }

  const form = document.getElementById("queue-form");
  const table = document.getElementById("queue");
  if (form && table) {
    const tagAll = document.getElementById("tag-all");
    if (tagAll) {
      tagAll.addEventListener("change", () => {
        form.querySelectorAll('tbody input[name="id"]').forEach((c) => { c.checked = tagAll.checked; });
      });
    }
    form.addEventListener("submit", (ev) => {
      const action = ev.submitter ? ev.submitter.value : "";
      const tagged = form.querySelectorAll('tbody input[name="id"]:checked').length;
      if (tagged === 0) {
        ev.preventDefault();
        window.alert(form.dataset.noneTagged);
        return;
      }
      const question = action === "delete" ? form.dataset.confirmDelete : form.dataset.confirmResend;
      if (!window.confirm(question + " (" + tagged + ")")) {
        ev.preventDefault();
        return;
      }
      const yes = document.createElement("input");
      yes.type = "hidden";
      yes.name = "confirm";
      yes.value = "yes";
      form.appendChild(yes);
    });

    // The body of an entry, on demand, under its row.
    table.addEventListener("click", async (ev) => {
      const link = ev.target.closest("a.show-body");
      if (!link) return;
      ev.preventDefault();
      const row = link.closest("tr");
      const open = row.nextElementSibling;
      if (open && open.classList.contains("body-row")) {
        open.remove();
        link.textContent = form.dataset.show;
        return;
      }
      const resp = await fetch("/api/v1/queue/" + encodeURIComponent(link.dataset.id), { credentials: "same-origin" });
      const data = await resp.json();
      const tr = document.createElement("tr");
      tr.className = "body-row";
      const td = document.createElement("td");
      td.colSpan = row.children.length;
      const pre = document.createElement("pre");
      pre.textContent = resp.ok ? data.body : data.error;
      td.appendChild(pre);
      tr.appendChild(td);
      row.after(tr);
      link.textContent = form.dataset.hide;
    });

    // While entries are waiting, the list refreshes itself, keeping the
    // tags the user set.
    const every = parseInt(document.body.dataset.livePoll, 10) || 3000;
    const refresh = async () => {
      if (table.dataset.waiting !== "true") return;
      try {
        const resp = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
        if (resp.ok) {
          const doc = new DOMParser().parseFromString(await resp.text(), "text/html");
          const fresh = doc.getElementById("queue");
          if (fresh) {
            const tagged = new Set(Array.from(form.querySelectorAll('tbody input[name="id"]:checked')).map((c) => c.value));
            const opened = table.querySelector("tr.body-row") !== null;
            if (!opened) {
              table.tBodies[0].replaceWith(document.importNode(fresh.tBodies[0], true));
              form.querySelectorAll('tbody input[name="id"]').forEach((c) => { c.checked = tagged.has(c.value); });
            }
            table.dataset.waiting = fresh.dataset.waiting;
          }
          updateBadge(doc);
        }
      } catch (e) {
        // The next round tries again.
      }
      window.setTimeout(refresh, every);
    };
    window.setTimeout(refresh, every);
  }

  const badge = document.getElementById("alert-count");
  function updateBadge(doc) {
    const fresh = doc.getElementById("alert-count");
    if (badge && fresh) {
      badge.textContent = fresh.textContent;
      badge.className = fresh.className;
      badge.setAttribute("aria-label", fresh.getAttribute("aria-label"));
    }
  }

  // New alert mail bumps the count in the header without a reload.
  if (badge && window.EventSource) {
    const events = new EventSource("/api/v1/events");
    events.addEventListener("mail", (ev) => {
      const data = JSON.parse(ev.data);
      if (!data.alert) return;
      const n = (parseInt(badge.textContent, 10) || 0) + 1;
      badge.textContent = String(n);
      badge.classList.remove("zero");
    });
    window.addEventListener("pagehide", () => events.close());
  }
})();
