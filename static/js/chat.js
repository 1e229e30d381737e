// The live inbox: conversation list with filters and unread badges, a conversation thread with
// history (scroll up for older), reply box with private notes, typing both ways, "Seen" receipts,
// assign / status / snooze / tags. REST for reads and writes, the /admin socket for live events.
import { api } from "./api.js";
import { adminSocket, request } from "./admin-socket.js";
import { h, notice } from "./dom.js";
import { ago, deviceBadges, userLabel } from "./format.js";
import { can } from "./shell.js";

const PAGE = 40;
const TYPING_IDLE_MS = 2500;

export function mountInbox(main, me) {
  main.classList.add("wide");
  const canReply = can(me, "conversations.reply");
  const canAssign = can(me, "conversations.assign");
  const state = { items: [], selected: null, detail: null, messages: [], hasMore: false, loadingOlder: false,
    userReadSeq: 0, typingTimer: null, online: new Set() };

  // ---- layout ----
  const search = h("input", { type: "search", placeholder: "Search messages, names, emails", "aria-label": "Search",
    "data-testid": "inbox-search" });
  const statusFilter = h("select", { "aria-label": "Status", "data-testid": "filter-status" },
    ["open", "pending", "snoozed", "closed", "all"].map((s) => h("option", { value: s }, s[0].toUpperCase() + s.slice(1))));
  const whoFilter = h("select", { "aria-label": "Assignee", "data-testid": "filter-assignee" },
    h("option", { value: "" }, "Everyone"), h("option", { value: "me" }, "Mine"),
    h("option", { value: "unassigned" }, "Unassigned"), h("option", { value: "unread" }, "Unread"));
  const list = h("div", { class: "conv-items", "data-testid": "conversation-list" });
  const listPane = h("section", { class: "inbox-list" }, h("div", { class: "inbox-filters" }, search, statusFilter, whoFilter), list);

  const head = h("div", { class: "thread-head" });
  const messagesBox = h("div", { class: "messages", "data-testid": "messages" });
  const typingLine = h("div", { class: "typing-line", "data-testid": "typing-indicator", "aria-live": "polite" });
  const textarea = h("textarea", { placeholder: "Reply to the user…", "aria-label": "Message", "data-testid": "composer-input" });
  const noteToggle = h("input", { type: "checkbox", "data-testid": "note-toggle" });
  const sendBtn = h("button", { class: "btn primary", type: "submit", "data-testid": "send" }, "Send");
  const composerMsg = h("div");
  const composer = h("form", { class: "composer" }, textarea,
    h("div", { class: "row" }, h("label", { class: "check" }, noteToggle, "Private note (only your team sees it)"), sendBtn),
    composerMsg);
  const thread = h("section", { class: "thread" }, head, messagesBox, typingLine, canReply ? composer : null);
  const details = h("aside", { class: "details", "data-testid": "details" });
  main.replaceChildren(h("div", { class: "inbox" }, listPane, thread, details));
  showEmptyThread();

  // ---- list ----
  function query() {
    const p = new URLSearchParams({ limit: String(PAGE) });
    if (statusFilter.value !== "all") p.set("status", statusFilter.value);
    if (whoFilter.value === "me") p.set("assignee", "me");
    if (whoFilter.value === "unassigned") p.set("unassigned", "true");
    if (whoFilter.value === "unread") p.set("unread", "true");
    if (search.value.trim()) p.set("q", search.value.trim());
    return p.toString();
  }

  let listSeq = 0;
  async function loadList() {
    const mine = ++listSeq;
    const page = await api(`/admin/api/conversations?${query()}`);
    if (mine !== listSeq) return; // a newer load started meanwhile
    state.items = page.conversations;
    renderList();
  }
  let reloadTimer = null;
  function reloadSoon() {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => loadList().catch(() => null), 150);
  }

  function renderList() {
    if (!state.items.length) {
      list.replaceChildren(h("div", { class: "empty" }, "No conversations here."));
      return;
    }
    list.replaceChildren(...state.items.map((c) => h("button", {
      type: "button", class: `conv-item${c.id === state.selected ? " active" : ""}`,
      dataset: { id: c.id }, "data-testid": "conversation-item", onclick: () => select(c.id),
    },
    h("div", { class: "top" },
      h("span", { class: "name" }, h("span", { class: `dot${state.online.has(c.user_id) ? " on" : ""}` }), userLabel(c.user)),
      h("span", { class: "time" }, ago(c.last_message_at || c.created_at))),
    h("div", { class: "preview" }, c.last_message_preview || c.subject || "No messages yet"),
    h("div", { class: "meta" },
      h("span", { class: `status-pill ${c.status}` }, c.status),
      c.admin_unread > 0 && c.id !== state.selected
        ? h("span", { class: "unread", "data-testid": "unread-badge" }, String(c.admin_unread)) : null,
      c.tags.map((t) => h("span", { class: "tag" }, t))))));
  }

  let searchTimer = null;
  search.addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(reloadSoon, 250);
  });
  statusFilter.addEventListener("change", reloadSoon);
  whoFilter.addEventListener("change", reloadSoon);

  // ---- thread ----
  function showEmptyThread() {
    head.replaceChildren(h("span", { class: "muted" }, "Select a conversation"));
    messagesBox.replaceChildren();
    details.replaceChildren(h("p", { class: "muted" }, "Conversation details appear here."));
    composer.hidden = true;
  }

  async function select(id) {
    if (state.selected && state.selected !== id) request(socket, "conversation:leave", state.selected).catch(() => null);
    state.selected = id;
    history.replaceState(null, "", `?c=${id}`);
    typingLine.textContent = "";
    const detail = await api(`/admin/api/conversations/${id}`);
    if (state.selected !== id) return;
    state.detail = detail;
    state.messages = detail.messages;
    state.hasMore = detail.has_more;
    state.userReadSeq = detail.receipts.filter((r) => r.participant_kind === "user")
      .reduce((top, r) => Math.max(top, r.read_seq), 0);
    composer.hidden = false;
    renderHead();
    renderDetails();
    renderMessages(true);
    renderList();
    request(socket, "conversation:join", { conversation_id: id }).catch(() => null);
    markRead();
  }

  function markRead() {
    const conv = state.detail?.conversation;
    const top = state.messages.length ? state.messages[state.messages.length - 1].seq : 0;
    if (!conv || !top || !canReply) return;
    api(`/admin/api/conversations/${conv.id}/read`, { method: "POST", body: { seq: top } }).catch(() => null);
  }

  function renderHead() {
    const conv = state.detail.conversation;
    const user = state.detail.user;
    const mineNow = conv.assignee_id && conv.assignee_id === me.admin.id;
    const assignBtn = h("button", { class: "btn small", type: "button", "data-testid": "assign", disabled: !canAssign,
      onclick: () => act("assign", { assignee_id: mineNow ? null : me.admin.id }) }, mineNow ? "Unassign" : "Assign to me");
    const statusSel = h("select", { "aria-label": "Set status", "data-testid": "set-status", disabled: !canAssign },
      [["open", conv.status === "closed" ? "Reopen" : "Open"], ["pending", "Pending"], ["snooze-1h", "Snooze 1 hour"],
        ["snooze-1d", "Snooze until tomorrow"], ["closed", "Closed"]]
        .map(([v, label]) => h("option", { value: v, selected: v === conv.status || (conv.status === "snoozed" && v === "snooze-1h") }, label)));
    statusSel.addEventListener("change", () => {
      const v = statusSel.value;
      if (v.startsWith("snooze")) {
        const ms = v === "snooze-1h" ? 3600e3 : 24 * 3600e3;
        act("status", { status: "snoozed", snoozed_until: new Date(Date.now() + ms).toISOString() });
      } else {
        act("status", { status: v });
      }
    });
    head.replaceChildren(
      h("div", {},
        h("strong", { "data-testid": "thread-user" }, userLabel(user)),
        conv.subject ? h("span", { class: "muted" }, ` · ${conv.subject}`) : null,
        " ", h("span", { class: `status-pill ${conv.status}`, "data-testid": "thread-status" }, conv.status),
        conv.snoozed_until ? h("span", { class: "muted" }, ` until ${new Date(conv.snoozed_until).toLocaleString()}`) : null),
      h("div", { class: "actions" }, assignBtn, statusSel));
  }

  function renderDetails() {
    const { user, conversation: conv } = state.detail;
    const device = user.metadata?.device || {};
    const tagInput = h("input", { placeholder: "Add tag", "aria-label": "Add tag", "data-testid": "tag-input", size: 10 });
    const tagForm = h("form", { class: "tags" }, tagInput);
    tagForm.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const tag = tagInput.value.trim();
      if (tag) act("tags", { add: [tag] });
    });
    const attrs = Object.entries(user.attributes || {});
    details.replaceChildren(...[
      h("section", {},
        h("h3", {}, "User"),
        h("dl", { class: "kv" },
          h("dt", {}, "Name"), h("dd", {}, user.name || "—"),
          h("dt", {}, "Email"), h("dd", {}, user.email || "—"),
          h("dt", {}, "User id"), h("dd", { class: "mono" }, user.user_id || user.anonymous_id || "—"),
          h("dt", {}, "Last seen"), h("dd", {}, ago(user.last_seen_at)),
          h("dt", {}, "Status"), h("dd", {}, state.online.has(user.id) ? "online" : "offline"))),
      h("section", {}, h("h3", {}, "Device"), h("dl", { class: "kv", "data-testid": "thread-device" },
        ...["platform", "model", "os_version", "app_version", "sdk_version", "locale"]
          .filter((k) => device[k]).flatMap((k) => [h("dt", {}, k.replace("_", " ")), h("dd", {}, device[k])]))),
      attrs.length ? h("section", {}, h("h3", {}, "Attributes"), h("dl", { class: "kv" },
        ...attrs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, typeof v === "string" ? v : JSON.stringify(v))]))) : null,
      h("section", {}, h("h3", {}, "Tags"),
        h("div", { class: "tags", "data-testid": "tags" }, conv.tags.map((t) => h("span", { class: "tag" }, t,
          canAssign ? h("button", { type: "button", "aria-label": `Remove ${t}`, onclick: () => act("tags", { remove: [t] }) }, "×") : null))),
        canAssign ? tagForm : null)].filter(Boolean)); // replaceChildren would print a null as text
  }

  function messageEl(m) {
    const kind = m.is_note ? "note" : m.sender_kind;
    return h("div", { class: `msg ${kind}`, dataset: { seq: String(m.seq) }, "data-testid": m.is_note ? "note" : `msg-${m.sender_kind}` },
      m.is_note ? h("strong", {}, "Note · ") : null, m.body,
      h("span", { class: "when" }, new Date(m.created_at).toLocaleTimeString()));
  }

  function renderMessages(toBottom) {
    const els = state.messages.map(messageEl);
    // "Seen" under the newest team message the user has read
    const seen = [...state.messages].reverse().find((m) => m.sender_kind !== "user" && !m.is_note);
    const nodes = [];
    if (state.hasMore) nodes.push(h("div", { class: "muted", style: "text-align:center" }, "Scroll up for older messages"));
    state.messages.forEach((m, i) => {
      nodes.push(els[i]);
      if (seen && m.seq === seen.seq && state.userReadSeq >= seen.seq) {
        nodes.push(h("div", { class: "seen", "data-testid": "seen" }, "Seen"));
      }
    });
    messagesBox.replaceChildren(...nodes);
    if (toBottom) messagesBox.scrollTop = messagesBox.scrollHeight;
  }

  messagesBox.addEventListener("scroll", async () => {
    if (messagesBox.scrollTop > 40 || !state.hasMore || state.loadingOlder || !state.messages.length) return;
    state.loadingOlder = true;
    const id = state.selected;
    try {
      const older = await api(`/admin/api/conversations/${id}?before=${state.messages[0].seq}`);
      if (state.selected !== id) return;
      const fromBottom = messagesBox.scrollHeight - messagesBox.scrollTop;
      state.messages = [...older.messages, ...state.messages];
      state.hasMore = older.has_more;
      renderMessages(false);
      messagesBox.scrollTop = messagesBox.scrollHeight - fromBottom; // keep the view where it was
    } finally {
      state.loadingOlder = false;
    }
  });

  async function act(action, body) {
    const id = state.selected;
    try {
      const conv = await api(`/admin/api/conversations/${id}/${action}`, { method: "POST", body });
      if (state.selected === id) {
        state.detail.conversation = conv;
        renderHead();
        renderDetails();
      }
      reloadSoon();
    } catch (err) {
      notice(composerMsg, err.message);
    }
  }

  // ---- composer ----
  let typingSent = false;
  let idleTimer = null;
  function stopTyping() {
    clearTimeout(idleTimer);
    if (typingSent && state.selected) socket.emit("typing:stop", state.selected);
    typingSent = false;
  }
  textarea.addEventListener("input", () => {
    if (noteToggle.checked || !state.selected) return; // notes are private: no typing for the user
    if (!typingSent) socket.emit("typing:start", { conversation_id: state.selected });
    typingSent = true;
    clearTimeout(idleTimer);
    idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
  });
  textarea.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey) {
      ev.preventDefault();
      composer.requestSubmit();
    }
  });
  noteToggle.addEventListener("change", () => {
    composer.classList.toggle("note-mode", noteToggle.checked);
    textarea.placeholder = noteToggle.checked ? "Write a private note…" : "Reply to the user…";
    sendBtn.textContent = noteToggle.checked ? "Add note" : "Send";
  });
  composer.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = textarea.value.trim();
    if (!body || !state.selected) return;
    stopTyping();
    sendBtn.disabled = true;
    composerMsg.replaceChildren();
    const kind = noteToggle.checked ? "notes" : "messages";
    try {
      const { message } = await api(`/admin/api/conversations/${state.selected}/${kind}`,
        { method: "POST", body: { client_id: crypto.randomUUID(), body } });
      textarea.value = "";
      addMessage(message);
    } catch (err) {
      notice(composerMsg, err.message);
    } finally {
      sendBtn.disabled = false;
      textarea.focus();
    }
  });

  function addMessage(m) {
    if (m.conversation_id !== state.selected || state.messages.some((x) => x.seq === m.seq)) return false;
    state.messages.push(m);
    state.messages.sort((a, b) => a.seq - b.seq);
    renderMessages(true);
    return true;
  }

  // ---- live events ----
  const socket = adminSocket();
  socket.on("connect", () => {
    if (state.selected) request(socket, "conversation:join", state.selected).catch(() => null);
    request(socket, "sessions:list").then((ack) => {
      state.online = new Set(ack.sessions.map((s) => s.user_id));
      renderList();
    }).catch(() => null);
  });
  socket.on("conversation:created", reloadSoon);
  socket.on("conversation:updated", (conv) => {
    if (conv.id === state.selected && state.detail) {
      state.detail.conversation = conv;
      renderHead();
      renderDetails();
    }
    reloadSoon();
  });
  socket.on("message:new", (m) => {
    if (addMessage(m) && m.sender_kind === "user") {
      typingLine.textContent = "";
      markRead();
    }
    reloadSoon();
  });
  socket.on("typing", (t) => {
    if (t.conversation_id !== state.selected) return;
    clearTimeout(state.typingTimer);
    if (!t.typing) {
      typingLine.textContent = "";
      return;
    }
    typingLine.textContent = t.sender_kind === "user"
      ? `${userLabel(state.detail?.user)} is typing…` : `${t.name || "A teammate"} is typing…`;
    state.typingTimer = setTimeout(() => { typingLine.textContent = ""; }, 8000); // a lost stop must not stick
  });
  socket.on("receipt:updated", (r) => {
    if (r.conversation_id !== state.selected || r.participant_kind !== "user") return;
    if (r.read_seq > state.userReadSeq) {
      state.userReadSeq = r.read_seq;
      renderMessages(false);
    }
  });
  socket.on("presence", (p) => {
    if (p.online) state.online.add(p.user_id);
    else state.online.delete(p.user_id);
    renderList();
    if (state.detail?.user.id === p.user_id) renderDetails();
  });

  // ---- start ----
  loadList().then(() => {
    const wanted = new URLSearchParams(location.search).get("c");
    if (wanted) select(wanted).catch((err) => notice(messagesBox, err.message));
  }).catch((err) => notice(list, err.message));
}
