// The preference center's script: one click per purpose records the choice and shows what the
// server recorded, whether it reached the other services, and Global Privacy Control; the stated
// preferences are saved or removed the same way.
(() => {
  "use strict";
  const main = document.getElementById("preferences");
  const strings = JSON.parse(document.getElementById("strings").textContent);
  const endpoint = main.dataset.endpoint;
  // A page cannot set Sec-GPC itself (a forbidden header), so the signal the script reads goes
  // in the body; browsers that send the header are honoured by the server as well.
  const gpc = navigator.globalPrivacyControl === true;
  const jsonHeaders = { "Content-Type": "application/json" };

  function show(item, status) {
    const action = status === "granted" ? "withdraw" : "allow";
    const button = item.querySelector("button.toggle");
    item.dataset.status = status;
    item.querySelector(".status").textContent = strings[status];
    button.dataset.action = action;
    button.textContent = strings[action];
  }

  function showGpc(purposes) {
    for (const purpose of purposes) {
      const item = main.querySelector(`.purpose[data-purpose="${purpose}"]`);
      if (item) show(item, "denied");
    }
    const notice = document.getElementById("gpc-notice");
    notice.textContent = strings.gpc_recorded;
    notice.hidden = false;
    main.dataset.gpcRecorded = "true";
  }

  // After a change, the segments and the recent choices are fetched again (server-rendered, as on
  // load) until the change has reached every service; a newer change starts a new round.
  const LIVE_ROUNDS = 120; // 30 s: a busy segmenter may take seconds; then the page stops asking
  const LIVE_PAUSE_MS = 250;
  let liveRound = 0;

  function replaceSection(id, html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const fresh = template.content.firstElementChild;
    const current = document.getElementById(id);
    if (fresh && current && fresh.id === id) current.replaceWith(fresh);
  }

  async function refresh() {
    const round = ++liveRound;
    for (let attempt = 0; attempt < LIVE_ROUNDS && round === liveRound; attempt++) {
      const response = await fetch(`${endpoint}/live`);
      if (!response.ok) throw new Error(`GET /live: ${response.status}`);
      const live = await response.json();
      if (round !== liveRound) return;
      replaceSection("segments", live.segments);
      replaceSection("recent-choices", live.choices);
      if (live.settled) return;
      await new Promise((resolve) => setTimeout(resolve, LIVE_PAUSE_MS));
    }
  }

  function refreshSoon() {
    refresh().catch((error) => console.error(error));
  }

  async function send(path, method, body) {
    const init = { method, headers: jsonHeaders };
    if (body !== undefined) init.body = JSON.stringify(body);
    const response = await fetch(`${endpoint}${path}`, init);
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status}`);
    return response.json();
  }

  // The notice version the recorded choice was made under: shown while the purpose is allowed,
  // and a choice made now is made under the current notice, so no renewal is asked for any more.
  function showNotice(item, result) {
    const agreed = item.querySelector(".notice-agreed");
    const version = result.status === "granted" ? result.notice_version : null;
    agreed.dataset.version = version ? String(version) : "";
    agreed.textContent = version ? strings.notice_agreed.replace("{version}", version) : "";
    for (const stale of item.querySelectorAll(".renew, .notice-changed")) stale.remove();
    item.dataset.notice = "current";
  }

  async function change(item, asked) {
    const buttons = item.querySelectorAll("button");
    const outcome = item.querySelector(".outcome");
    for (const button of buttons) button.disabled = true;
    item.removeAttribute("data-published");
    outcome.textContent = strings.saving;
    try {
      const result = await send(`/consents/${item.dataset.purpose}`, "PUT", { status: asked, gpc });
      show(item, result.status);
      showNotice(item, result);
      if (result.gpc_denied.length) showGpc(result.gpc_denied);
      const saved = result.pending_publication ? strings.saved_pending : strings.saved_published;
      outcome.textContent = asked !== result.status ? strings.gpc_blocks_grant : saved;
      item.dataset.published = String(!result.pending_publication);
      refreshSoon();
    } catch (error) {
      outcome.textContent = strings.failed;
      console.error(error);
    } finally {
      for (const button of buttons) button.disabled = false;
      item.querySelector("button.toggle").focus();
    }
  }

  function usedBy(segments) {
    if (segments === null) return strings.used_by_unavailable;
    if (!segments.length) return strings.used_by_none;
    return strings.used_by.replace("{segments}", segments.join(", "));
  }

  // Saving with nothing chosen removes the preference: an empty answer is no answer.
  async function statePreference(form, remove) {
    const inputs = [...form.querySelectorAll("input:checked")];
    const multiple = form.querySelector("input").type === "checkbox";
    const path = `/preferences/${form.dataset.preference}`;
    const buttons = form.querySelectorAll("button");
    const outcome = form.querySelector(".outcome");
    for (const button of buttons) button.disabled = true;
    form.removeAttribute("data-published");
    outcome.textContent = strings.saving;
    try {
      const value = multiple ? inputs.map((input) => input.value) : inputs[0] && inputs[0].value;
      const removing = remove || !inputs.length;
      const result = await (removing ? send(path, "DELETE") : send(path, "PUT", { value }));
      if (result.value === null) for (const input of form.querySelectorAll("input")) input.checked = false;
      form.dataset.stated = String(result.value !== null);
      form.querySelector(".remove").hidden = result.value === null;
      const used = form.querySelector(".used-by");
      used.textContent = usedBy(result.used_by);
      used.dataset.used = result.used_by === null ? "unavailable" : result.used_by.length ? "yes" : "no";
      const done = result.value === null ? strings.pref_removed : strings.saved_published;
      outcome.textContent = result.pending_publication ? strings.saved_pending : done;
      form.dataset.published = String(!result.pending_publication);
      refreshSoon();
    } catch (error) {
      outcome.textContent = strings.failed;
      console.error(error);
    } finally {
      for (const button of buttons) button.disabled = false;
    }
  }

  // The data-use question: counted once, and nothing ties the answer to the customer.
  async function answerFeeling(form) {
    const chosen = form.querySelector("input:checked");
    if (!chosen) return;
    const outcome = document.getElementById("feeling-outcome");
    try {
      await send("/feeling", "POST", { answer: chosen.value });
      form.remove();
      document.getElementById("feeling").dataset.answered = "true";
      outcome.textContent = strings.feeling_thanks;
    } catch (error) {
      outcome.textContent = strings.failed;
      console.error(error);
    }
  }

  main.addEventListener("submit", (event) => {
    const form = event.target.closest("form");
    if (!form) return;
    event.preventDefault();
    if (form.id === "feeling-form") answerFeeling(form);
    else if (form.classList.contains("stated")) statePreference(form, false);
  });

  const erase = document.getElementById("erase");
  const confirmation = document.getElementById("erase-confirm");

  function askToErase(open) {
    confirmation.hidden = !open;
    erase.setAttribute("aria-expanded", String(open));
    (open ? document.getElementById("erase-yes") : erase).focus();
  }

  async function eraseAll() {
    const outcome = document.getElementById("erase-outcome");
    try {
      await send("/erasure", "POST", { confirm: true });
      confirmation.hidden = true;
      // The link is revoked now: nothing on the page can act any more.
      for (const button of main.querySelectorAll("button")) button.disabled = true;
      document.getElementById("export").remove();
      main.dataset.erased = "true";
      outcome.textContent = strings.erased;
    } catch (error) {
      outcome.textContent = strings.failed;
      console.error(error);
    }
  }

  main.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button) return;
    if (button.classList.contains("toggle")) {
      change(button.closest(".purpose"), button.dataset.action === "allow" ? "granted" : "denied");
    } else if (button.classList.contains("renew")) change(button.closest(".purpose"), "granted");
    else if (button.classList.contains("remove")) statePreference(button.closest("form.stated"), true);
    else if (button.id === "erase") askToErase(true);
    else if (button.id === "erase-no") askToErase(false);
    else if (button.id === "erase-yes") eraseAll();
  });

  // The signal seen only by the script (the page request had no Sec-GPC): record it now.
  if (gpc && main.dataset.gpcRecorded !== "true") {
    send("/gpc", "POST", {}).then((result) => showGpc(result.gpc_denied)).catch((error) => {
      const notice = document.getElementById("gpc-notice");
      notice.textContent = strings.failed;
      notice.hidden = false;
      console.error(error);
    });
  }
})();
