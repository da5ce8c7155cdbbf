/* The local workspace's client: a Slack-like page over the workspace's /_local/ endpoints.
 *
 * One person at a time (the user switcher), one conversation, an optional thread pane, modals on top.
 * Everything shown is fetched from /_local/ and refreshed when /_local/stream (the workspace's change
 * feed, as Server-Sent Events) says something changed: nothing is polled and nothing reloads.
 */
(function () {
  "use strict";

  // ------------------------------------------------------------------ state

  const state = {
    ws: null,            // /_local/workspace: team, app, users, channels, commands
    me: null,            // the person's user id
    channel: null,       // the open conversation's id
    tab: "messages",     // "messages" or "home" (the app's DM has both)
    thread: null,        // the open thread's ts
    staged: { main: [], thread: [] },
    unread: {},          // channel id -> count
    dismissed: new Set(JSON.parse(sessionStorage.getItem("dismissed") || "[]")),
    modalKey: null,      // id:hash of the modal on screen
    modalErrors: {},
    socketConnections: null,
    statuses: {},        // thread_ts -> status, for the open channel
    shown: {},           // ts -> message, the open channel's top-level messages
  };
  const $ = (selector, root) => (root || document).querySelector(selector);

  // ------------------------------------------------------------------ the /_local/ API

  async function api(method, path, body) {
    const options = { method, headers: {} };
    if (body !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const response = await fetch(path, options);
    let data = null;
    try { data = await response.json(); } catch (e) { data = null; }
    if (!response.ok) {
      const error = new Error((data && (data.error || data.detail && JSON.stringify(data.detail))) || response.statusText);
      error.data = data;
      throw error;
    }
    return data;
  }
  const get = (path, params) => api("GET", params ? `${path}?${new URLSearchParams(params)}` : path);
  const post = (path, body) => api("POST", path, body || {});

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "html") node.innerHTML = value;
      else if (key === "text") node.textContent = value;
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else if (key === "dataset") Object.assign(node.dataset, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
  const unescapeSlack = (text) => String(text).replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&amp;/g, "&");

  function toast(message, kind) {
    const node = el("div", { class: `toast ${kind || ""}`, role: "status" }, message);
    $("#toasts").append(node);
    setTimeout(() => node.remove(), kind === "error" ? 7000 : 4000);
  }

  const user = (id) => (state.ws && state.ws.users.find((u) => u.id === id)) || null;
  const userByName = (name) => state.ws.users.find((u) => u.name === name) || null;
  const displayName = (u) => (u ? u.profile?.display_name || u.name : "unknown");
  const realName = (u) => (u ? u.real_name || u.name : "Unknown");
  const isBot = (id) => state.ws && id === state.ws.app.bot_user_id;
  const channelOf = (id) => state.ws.channels.find((c) => c.id === id) || null;
  const botDm = () => state.ws.channels.find((c) => c.is_im && c.user === state.me) || null;

  const COLORS = ["#2f7d32", "#1264a3", "#c2410c", "#7c3aed", "#be185d", "#0f766e", "#a16207", "#4338ca"];
  function colorFor(id) {
    let hash = 0;
    for (const c of id || "") hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
    return COLORS[hash % COLORS.length];
  }
  const BOT_LOGO = '<svg viewBox="0 0 24 24" fill="none" stroke="white" stroke-width="2.6" stroke-linecap="round"><path d="M6 7h12M12 7v11"/><circle cx="18.5" cy="17" r="1.6" fill="white" stroke="none"/></svg>';
  const PEOPLE_ICON = '<svg width="14" height="14" viewBox="0 0 20 20" fill="none" stroke="currentColor" stroke-width="1.8"><circle cx="8" cy="7" r="3.2"/><path d="M2.5 17c.6-3.2 2.8-5 5.5-5s4.9 1.8 5.5 5"/><path d="M13.5 4.3a3 3 0 0 1 0 5.6M15.5 12.5c1.2.8 1.9 2.4 2.1 4.5"/></svg>';
  function avatar(id, small) {
    if (isBot(id)) return el("span", { class: `avatar bot ${small ? "small" : ""}`, html: BOT_LOGO, "aria-hidden": "true" });
    const u = user(id);
    const initial = realName(u).trim().charAt(0).toUpperCase() || "?";
    return el("span", { class: `avatar ${small ? "small" : ""}`, style: `background:${colorFor(id)}`, "aria-hidden": "true" }, initial);
  }

  function tsDate(ts) { return new Date(parseFloat(ts) * 1000); }
  function clock(ts) { return tsDate(ts).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" }); }
  function dayLabel(ts) {
    const date = tsDate(ts);
    const today = new Date();
    const yesterday = new Date(Date.now() - 86400000);
    if (date.toDateString() === today.toDateString()) return "Today";
    if (date.toDateString() === yesterday.toDateString()) return "Yesterday";
    return date.toLocaleDateString([], { weekday: "long", month: "long", day: "numeric" });
  }
  function size(bytes) {
    if (!bytes && bytes !== 0) return "";
    if (bytes < 1024) return `${bytes} B`;
    if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(bytes < 10240 ? 1 : 0)} KB`;
    return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
  }

  // ------------------------------------------------------------------ emoji

  const EMOJI = {
    white_check_mark: "✅", heavy_check_mark: "✔️", x: "❌", warning: "⚠️", hourglass: "⌛", hourglass_flowing_sand: "⏳",
    grey_question: "❔", question: "❓", grey_exclamation: "❕", exclamation: "❗", no_entry_sign: "🚫", no_entry: "⛔",
    rocket: "🚀", tada: "🎉", robot_face: "🤖", wave: "👋", bulb: "💡", eyes: "👀", thumbsup: "👍", "+1": "👍",
    thumbsdown: "👎", "-1": "👎", heart: "❤️", fire: "🔥", sparkles: "✨", star: "⭐", chart_with_upwards_trend: "📈",
    chart_with_downwards_trend: "📉", bar_chart: "📊", page_facing_up: "📄", file_folder: "📁", open_file_folder: "📂",
    paperclip: "📎", gear: "⚙️", hammer_and_wrench: "🛠️", stopwatch: "⏱️", alarm_clock: "⏰", clock1: "🕐", pause_button: "⏸️",
    arrow_forward: "▶️", black_square_for_stop: "⏹️", repeat: "🔁", arrows_counterclockwise: "🔄", speech_balloon: "💬",
    thinking_face: "🤔", brain: "🧠", books: "📚", memo: "📝", pencil: "📝", mag: "🔍", lock: "🔒", key: "🔑",
    information_source: "ℹ️", point_right: "👉", point_up: "☝️", raised_hands: "🙌", clap: "👏", muscle: "💪", zap: "⚡",
    checkered_flag: "🏁", trophy: "🏆", package: "📦", inbox_tray: "📥", outbox_tray: "📤", hugging_face: "🤗",
    large_green_circle: "🟢", large_yellow_circle: "🟡", red_circle: "🔴", large_blue_circle: "🔵", white_circle: "⚪",
    cry: "😢", smile: "😄", slightly_smiling_face: "🙂", sweat_smile: "😅", scream: "😱", boom: "💥", skull: "💀",
  };
  const emoji = (html) => html.replace(/:([a-z0-9_+-]+):/g, (whole, name) => EMOJI[name] || whole);

  // ------------------------------------------------------------------ mrkdwn

  /** Slack's mrkdwn to HTML: *bold*, _italic_, ~strike~, `code`, ```blocks```, > quotes, <links|text>,
   * <@U…> mentions, <#C…> channels, <!here>, :emoji:, and &amp; &lt; &gt; shown as the characters. */
  function mrkdwn(text, options) {
    const verbatim = options && options.verbatim;
    const slots = [];
    const hold = (html) => `\u0000${slots.push(html) - 1}\u0000`;
    let source = String(text || "");
    source = source.replace(/```([\s\S]*?)```/g, (_, code) => hold(`<pre>${escapeHtml(unescapeSlack(code.replace(/^\n/, "")))}</pre>`));
    source = source.replace(/`([^`\n]+)`/g, (_, code) => hold(`<code>${escapeHtml(unescapeSlack(code))}</code>`));
    source = source.replace(/<([@#!])?([^>|\s]+)(?:\|([^>]*))?>/g, (whole, sigil, target, label) => {
      if (sigil === "@") {
        const u = user(target);
        const mine = target === state.me ? " me" : "";
        return hold(`<span class="mention${mine}" data-user="${escapeHtml(target)}">@${escapeHtml(label || displayName(u) || target)}</span>`);
      }
      if (sigil === "#") {
        const c = channelOf(target);
        return hold(`<a class="mention channel-link" data-channel="${escapeHtml(target)}">#${escapeHtml(label || (c && c.name) || target)}</a>`);
      }
      if (sigil === "!") {
        const name = target.startsWith("subteam^") ? (label || "group") : target.split("^")[0];
        return hold(`<span class="mention">@${escapeHtml(name)}</span>`);
      }
      const url = unescapeSlack(target);
      if (!/^(https?:|mailto:|tel:|slack:)/i.test(url)) return whole;
      const shown = label !== undefined ? unescapeSlack(label) : url;
      return hold(`<a href="${escapeHtml(url)}" target="_blank" rel="noopener noreferrer">${escapeHtml(shown)}</a>`);
    });
    let html = escapeHtml(unescapeSlack(source));
    if (!verbatim) {
      const before = "(^|[\\s(\\[{\"'“‘\\u0000>-])";
      const after = "(?=$|[\\s.,;:!?)\\]}\"'”’\\u0000<-])";
      html = html
        .replace(new RegExp(`${before}\\*(?!\\s)([^*\\n]*?[^\\s*])\\*${after}`, "g"), "$1<b>$2</b>")
        .replace(new RegExp(`${before}_(?!\\s)([^_\\n]*?[^\\s_])_${after}`, "g"), "$1<i>$2</i>")
        .replace(new RegExp(`${before}~(?!\\s)([^~\\n]*?[^\\s~])~${after}`, "g"), "$1<s>$2</s>");
      html = html.replace(/(^|\n)&gt; ?([^\n]*)/g, "$1<blockquote>$2</blockquote>").replace(/<\/blockquote>\n/g, "</blockquote>");
      html = emoji(html);
    }
    html = html.replace(/\n/g, "<br>");
    return html.replace(/\u0000(\d+)\u0000/g, (_, i) => slots[Number(i)]);
  }

  function textObject(object) {
    if (!object) return "";
    if (typeof object === "string") return escapeHtml(object);
    if (object.type === "mrkdwn") return mrkdwn(object.text, { verbatim: object.verbatim });
    const html = escapeHtml(object.text || "").replace(/\n/g, "<br>");
    return object.emoji === false ? html : emoji(html);
  }
  const plain = (object) => (object ? object.text || "" : "");

  // ------------------------------------------------------------------ Block Kit

  /** ctx: {kind: "message", channel, ts} or {kind: "view", viewId}; inputs render only in views. */
  function renderBlocks(blocks, ctx) {
    const node = el("div", { class: "blocks" });
    for (const block of blocks || []) node.append(renderBlock(block, ctx));
    return node;
  }

  function renderBlock(block, ctx) {
    const id = block.block_id;
    switch (block.type) {
      case "section": {
        const main = el("div", { class: "section-main" });
        if (block.text) main.append(el("div", { class: "mrkdwn", html: textObject(block.text) }));
        if (block.fields) main.append(el("div", { class: "fields" }, block.fields.map((f) => el("div", { class: "mrkdwn", html: textObject(f) }))));
        const section = el("div", { class: "block block-section", "data-block-type": "section", "data-block-id": id }, main);
        if (block.accessory) section.append(renderElement(block.accessory, block, ctx, true));
        return section;
      }
      case "context":
        return el("div", { class: "block block-context", "data-block-type": "context", "data-block-id": id },
          (block.elements || []).map((e) => (e.type === "image" ? imageElement(e) : el("span", { class: "mrkdwn", html: textObject(e) }))));
      case "divider":
        return el("hr", { class: "block block-divider", "data-block-type": "divider" });
      case "header":
        return el("div", { class: "block block-header", "data-block-type": "header", "data-block-id": id, html: textObject(block.text) });
      case "image": {
        const figure = el("figure", { class: "block block-image", "data-block-type": "image", "data-block-id": id });
        if (block.title) figure.append(el("figcaption", { html: textObject(block.title) }));
        figure.append(imageElement(block));
        return figure;
      }
      case "actions":
        return el("div", { class: "block block-actions", "data-block-type": "actions", "data-block-id": id },
          (block.elements || []).map((e) => renderElement(e, block, ctx)));
      case "input":
        return renderInput(block, ctx);
      case "rich_text":
        return el("div", { class: "block block-rich-text mrkdwn", "data-block-type": "rich_text", html: richText(block) });
      case "markdown":
        return el("div", { class: "block block-markdown mrkdwn", "data-block-type": "markdown", html: markdown(block.text) });
      case "file":
        return el("div", { class: "block block-file" }, renderFile({ id: block.file_id, name: block.file_id, mode: "hosted" }));
      case "video":
        return el("div", { class: "block" }, el("a", { href: block.title_url || block.video_url, target: "_blank", rel: "noopener" }, plain(block.title) || "Video"));
      default:
        return el("div", { class: "block block-unknown" }, `A ${block.type} block (not shown in the local workspace)`);
    }
  }

  function imageSource(e) {
    if (e.slack_file) return e.slack_file.id ? `/_local/files/${encodeURIComponent(e.slack_file.id)}/content` : e.slack_file.url;
    return e.image_url;
  }
  function imageElement(e) {
    return el("img", { src: imageSource(e), alt: e.alt_text || "", loading: "lazy", onload: keepAtBottom });
  }

  function renderElement(element, block, ctx, accessory) {
    if (element.type === "image") return el("img", { class: accessory ? "accessory-image" : "", src: imageSource(element), alt: element.alt_text || "" });
    if (element.type === "button") {
      const style = element.style === "primary" ? "primary" : element.style === "danger" ? "danger" : "";
      const button = el("button", {
        type: "button", class: `btn ${style}`, "data-action-id": element.action_id, "data-value": element.value,
        html: textObject(element.text),
      });
      button.addEventListener("click", async () => {
        if (element.url) window.open(element.url, "_blank", "noopener");
        if (element.confirm && !(await confirmDialog(element.confirm))) return;
        await act(ctx, element, element.value, button);
      });
      return button;
    }
    if (["static_select", "overflow", "radio_buttons"].includes(element.type) && ctx.kind !== "input") {
      const options = allOptions(element);
      const select = el("select", { class: "select", "data-action-id": element.action_id },
        el("option", { value: "", text: element.type === "overflow" ? "⋯" : plain(element.placeholder) || "Select an option" }),
        options.map((o) => el("option", { value: o.value, text: plain(o.text), selected: element.initial_option && element.initial_option.value === o.value })));
      select.addEventListener("change", async () => {
        if (!select.value) return;
        const chosen = select.value;
        if (element.confirm && !(await confirmDialog(element.confirm))) { select.value = ""; return; }
        await act(ctx, element, chosen, select);
        if (element.type === "overflow") select.value = "";
      });
      return select;
    }
    if (element.type === "plain_text" || element.type === "mrkdwn") return el("span", { class: "mrkdwn", html: textObject(element) });
    return el("span", { class: "block-unknown" }, `${element.type}`);
  }

  function allOptions(element) {
    if (element.options) return element.options;
    return (element.option_groups || []).flatMap((g) => g.options || []);
  }

  /** A person clicks a button (or picks an option) in a message, an ephemeral, a modal or the Home tab. */
  async function act(ctx, element, value, control) {
    const body = { user: state.me, action_id: element.action_id, wait: true };
    if (value !== undefined && value !== null) body.value = value;
    if (ctx.kind === "view") body.view_id = ctx.viewId;
    else Object.assign(body, { channel: ctx.channel, message_ts: ctx.ts });
    control.disabled = true;
    control.classList.add("busy");
    try {
      const answer = await post("/_local/clicks", body);
      if (answer && answer.error) toast(`${state.ws.app.name} did not respond (${answer.error}).`, "error");
    } catch (error) {
      toast(`That did not work: ${error.message}`, "error");
    } finally {
      control.disabled = false;
      control.classList.remove("busy");
    }
  }

  function richText(block) {
    const inline = (items) => (items || []).map((item) => {
      let html;
      if (item.type === "text") html = escapeHtml(item.text);
      else if (item.type === "user") html = mrkdwn(`<@${item.user_id}>`);
      else if (item.type === "channel") html = mrkdwn(`<#${item.channel_id}>`);
      else if (item.type === "broadcast") html = `<span class="mention">@${escapeHtml(item.range)}</span>`;
      else if (item.type === "link") html = `<a href="${escapeHtml(item.url)}" target="_blank" rel="noopener noreferrer">${escapeHtml(item.text || item.url)}</a>`;
      else if (item.type === "emoji") html = item.unicode ? String.fromCodePoint(...item.unicode.split("-").map((h) => parseInt(h, 16))) : emoji(`:${item.name}:`);
      else html = escapeHtml(item.text || "");
      const style = item.style || {};
      if (style.code) html = `<code>${html}</code>`;
      if (style.bold) html = `<b>${html}</b>`;
      if (style.italic) html = `<i>${html}</i>`;
      if (style.strike) html = `<s>${html}</s>`;
      return html;
    }).join("").replace(/\n/g, "<br>");
    return (block.elements || []).map((section) => {
      if (section.type === "rich_text_preformatted") return `<pre>${inline(section.elements)}</pre>`;
      if (section.type === "rich_text_quote") return `<blockquote>${inline(section.elements)}</blockquote>`;
      if (section.type === "rich_text_list") {
        const tag = section.style === "ordered" ? "ol" : "ul";
        return `<${tag}>${(section.elements || []).map((item) => `<li>${inline(item.elements)}</li>`).join("")}</${tag}>`;
      }
      return inline(section.elements);
    }).join("");
  }

  /** The `markdown` block: standard Markdown, as far as a chat message needs it. */
  function markdown(text) {
    const converted = String(text || "")
      .replace(/\*\*(.+?)\*\*/g, "*$1*")
      .replace(/\[([^\]]+)\]\((https?:[^)\s]+)\)/g, "<$2|$1>")
      .replace(/^#{1,6}\s+(.+)$/gm, "*$1*");
    return mrkdwn(converted.replace(/&/g, "&amp;").replace(/<(?![@#!]|https?:)/g, "&lt;"));
  }

  // ------------------------------------------------------------------ files

  function renderFile(file) {
    if (!file || file.mode === "tombstone" || file.is_deleted) return el("div", { class: "file-gone" }, "This file was deleted.");
    const url = `/_local/files/${encodeURIComponent(file.id)}/content`;
    if ((file.mimetype || "").startsWith("image/")) {
      return el("a", { class: "file-image", href: url, target: "_blank", rel: "noopener", "data-file-id": file.id },
        el("div", { class: "file-title" }, file.title || file.name),
        el("img", { src: url, alt: file.alt_txt || file.title || file.name, onload: keepAtBottom }));
    }
    const ext = (file.name || "").split(".").pop().slice(0, 4);
    return el("a", { class: "file-chip", href: `${url}?download=1`, download: file.name, "data-file-id": file.id, title: `Download ${file.name}` },
      el("span", { class: `file-icon ${file.filetype || ""}` }, ext),
      el("span", { style: "min-width:0" }, el("div", { class: "file-name" }, file.title || file.name),
        el("div", { class: "file-sub" }, [file.pretty_type, size(file.size)].filter(Boolean).join(" · "))),
      el("span", { class: "file-dl", "aria-hidden": "true" }, "⤓"));
  }

  // ------------------------------------------------------------------ messages

  function author(message) {
    if (message.bot_id || message.subtype === "bot_message") return state.ws.app.bot_user_id;
    return message.user;
  }

  function renderMessage(message, opts) {
    const { channel, inThread, ephemeral, compact } = opts;
    const who = author(message);
    const u = user(who);
    const bot = isBot(who);
    const name = bot ? (message.bot_profile && message.bot_profile.name) || displayName(u) : realName(u);
    const ctx = { kind: "message", channel, ts: message.ts };
    const body = el("div", { class: "body" });
    if (!compact) {
      body.append(el("div", { class: "meta" },
        el("span", { class: "author" }, name), bot ? el("span", { class: "app-badge" }, "APP") : null,
        el("time", { datetime: tsDate(message.ts).toISOString(), title: tsDate(message.ts).toLocaleString() }, clock(message.ts))));
    }
    if (message.subtype === "thread_broadcast" && !inThread) {
      body.append(el("div", { class: "broadcast-note" }, "replied to a thread: ",
        el("a", { onclick: () => openThread(message.thread_ts) }, rootSummary(message))));
    }
    // A person's message: its text as typed (its rich_text block says the same); the app's: its blocks.
    const blocks = (message.blocks || []).filter((b) => b.type !== "rich_text");
    const content = el("div", { class: "content" });
    if (blocks.length) content.append(renderBlocks(message.blocks, ctx));
    else if (message.text) content.append(el("div", { class: "mrkdwn", html: mrkdwn(message.text) }));
    else if (message.blocks && message.blocks.length) content.append(renderBlocks(message.blocks, ctx));
    if (message.edited && !bot) content.append(el("span", { class: "edited" }, " (edited)"));
    body.append(content);
    if (message.files && message.files.length) body.append(el("div", { class: "files" }, message.files.map(renderFile)));
    if (message.reactions && message.reactions.length) {
      body.append(el("div", { class: "reactions" }, message.reactions.map((r) =>
        el("span", { class: "reaction", title: r.users.map((id) => displayName(user(id))).join(", ") }, `${emoji(`:${r.name}:`)} ${r.count}`))));
    }
    if (!inThread && message.reply_count) {
      const last = message.latest_reply ? `Last reply ${dayLabel(message.latest_reply).toLowerCase() === "today" ? "today" : dayLabel(message.latest_reply)} at ${clock(message.latest_reply)}` : "";
      body.append(el("div", { class: "replies-bar", role: "button", tabindex: "0", onclick: () => openThread(message.ts) },
        (message.reply_users || []).slice(0, 4).map((id) => avatar(id, true)),
        el("span", { class: "count" }, `${message.reply_count} ${message.reply_count === 1 ? "reply" : "replies"}`),
        el("span", { class: "last" }, last)));
    }
    const status = !inThread && state.statuses[message.ts];
    if (status && status.status) body.append(el("div", { class: "typing" }, `${state.ws.app.name} ${status.status.replace(/[.…]+$/, "")}`));
    if (ephemeral) {
      body.append(el("div", { class: "ephemeral-note" }, "👁 Only visible to you",
        el("button", { type: "button", onclick: () => dismiss(message.ts) }, "Dismiss")));
    }
    const gutter = el("div", { class: "gutter" }, compact ? el("span", { class: "compact-time" }, clock(message.ts)) : avatar(who));
    const actions = el("div", { class: "hover-actions" });
    if (!inThread && !ephemeral) actions.append(el("button", { type: "button", title: "Reply in thread", onclick: () => openThread(message.thread_ts || message.ts) }, "💬 Reply"));
    return el("div", {
      class: `msg ${compact ? "compact" : ""} ${ephemeral ? "ephemeral" : ""}`, "data-ts": message.ts,
      "data-user": who, "data-bot": bot ? "true" : null, "data-ephemeral": ephemeral ? "true" : null,
    }, gutter, body, actions.childElementCount ? actions : null);
  }

  function rootSummary(message) {
    const root = state.shown[message.thread_ts] || message.root;
    const file = root && root.files && root.files[0];
    const text = root ? (root.text || (file && (file.title || file.name)) || (file ? "a file" : "a message")) : "a message";
    return plainText(text).slice(0, 80);
  }

  /** mrkdwn as plain text: mentions as @name, links as their label, no markup. */
  function plainText(text) {
    return unescapeSlack(String(text)
      .replace(/<@(\w+)(?:\|[^>]*)?>/g, (_, id) => `@${displayName(user(id))}`)
      .replace(/<#(\w+)(?:\|([^>]*))?>/g, (_, id, name) => `#${name || (channelOf(id) || {}).name || id}`)
      .replace(/<!(\w+)[^>]*>/g, "@$1")
      .replace(/<([^>|]+)\|([^>]*)>/g, "$2").replace(/<([^>]+)>/g, "$1")
      .replace(/```/g, "").replace(/[*_~`]/g, "")).replace(/\s+/g, " ").trim();
  }

  function dismiss(ts) {
    state.dismissed.add(ts);
    sessionStorage.setItem("dismissed", JSON.stringify([...state.dismissed]));
    refresh("conversation", "thread");
  }

  /** Replace the list's children by key, re-rendering only what changed (no flicker while a job reports). */
  function reconcile(container, items) {
    const existing = new Map();
    for (const child of container.children) if (child.dataset.key) existing.set(child.dataset.key, child);
    const wanted = [];
    for (const item of items) {
      let node = existing.get(item.key);
      if (!node || node.dataset.sig !== item.sig) {
        if (node) node.remove();
        node = item.render();
        node.dataset.key = item.key;
        node.dataset.sig = item.sig;
      }
      existing.delete(item.key);
      wanted.push(node);
    }
    for (const stale of existing.values()) stale.remove();
    for (const child of [...container.children]) if (!child.dataset.key) child.remove();
    wanted.forEach((node, i) => {
      if (container.children[i] !== node) container.insertBefore(node, container.children[i] || null);
    });
  }

  function listItems(conversation, inThread) {
    const channel = conversation.channel;
    const entries = conversation.messages.map((m) => ({ message: m, ephemeral: false }))
      .concat(conversation.ephemerals.filter((e) => !state.dismissed.has(e.ts)).map((m) => ({ message: m, ephemeral: true })))
      .sort((a, b) => parseFloat(a.message.ts) - parseFloat(b.message.ts));
    const items = [];
    let previous = null;
    let day = null;
    entries.forEach((entry, index) => {
      const m = entry.message;
      const label = dayLabel(m.ts);
      if (label !== day && !inThread) {
        day = label;
        items.push({ key: `day:${label}`, sig: label, render: () => el("div", { class: "day" }, el("span", {}, label)) });
        previous = null;
      }
      const who = author(m);
      const compact = previous && !entry.ephemeral && !previous.ephemeral && author(previous.message) === who
        && parseFloat(m.ts) - parseFloat(previous.message.ts) < 300 && !previous.message.reply_count
        && m.subtype !== "thread_broadcast" && !(inThread && index === 1);
      const status = !inThread && state.statuses[m.ts];
      const sig = JSON.stringify([m, compact, entry.ephemeral, status && status.status, state.me]);
      items.push({
        key: `${entry.ephemeral ? "e" : "m"}:${m.ts}`, sig,
        render: () => renderMessage(m, { channel, inThread, ephemeral: entry.ephemeral, compact }),
      });
      if (inThread && index === 0 && entries.length > 1) {
        const replies = entries.length - 1;
        items.push({ key: "replies", sig: String(replies), render: () => el("div", { class: "reply-divider" }, `${replies} ${replies === 1 ? "reply" : "replies"}`) });
      }
      previous = entry;
    });
    return items;
  }

  // ------------------------------------------------------------------ scrolling

  const stick = new WeakMap();
  function watchScroll(container) {
    stick.set(container, true);
    container.addEventListener("scroll", () => {
      stick.set(container, container.scrollHeight - container.scrollTop - container.clientHeight < 60);
    });
  }
  function keepAtBottom() {
    for (const container of [$("#messages"), $("#thread-messages")]) {
      if (stick.get(container)) container.scrollTop = container.scrollHeight;
    }
  }

  // ------------------------------------------------------------------ sidebar and header

  function renderSidebar() {
    const ws = state.ws;
    $("#team-name").textContent = ws.team.name;
    const mine = ws.channels.filter((c) => !c.is_im && c.members.includes(state.me) && !c.is_archived)
      .sort((a, b) => a.name.localeCompare(b.name));
    const link = (id, sigil, label, extra) => {
      const active = state.channel === id && state.tab === "messages" ? "active" : "";
      const unread = state.unread[id] && state.channel !== id ? "unread" : "";
      return el("li", {}, el("a", {
        href: `#${id}`, class: `${active} ${unread}`, "data-channel": id,
        onclick: (event) => { event.preventDefault(); openChannel(id, extra && extra.tab); },
      }, sigil, el("span", {}, label), unread ? el("span", { class: "badge" }, String(state.unread[id])) : null));
    };
    $("#channels").replaceChildren(...mine.map((c) => link(c.id, el("span", { class: "sigil" }, c.is_private ? "🔒" : "#"), c.name)));
    const dm = botDm();
    const online = state.socketConnections > 0;
    const presence = () => el("span", { class: `presence ${online ? "online" : ""}`, title: online ? "connected" : "not connected" });
    $("#dms").replaceChildren(...(dm ? [link(dm.id, presence(), ws.app.name, { tab: "messages" })] : []));
    const apps = dm ? [el("li", {}, el("a", {
      href: `#${dm.id}/home`, class: state.channel === dm.id && state.tab === "home" ? "active" : "",
      onclick: (event) => { event.preventDefault(); openChannel(dm.id, "home"); },
    }, avatar(ws.app.bot_user_id, true), el("span", {}, ws.app.name)))] : [];
    $("#apps").replaceChildren(...apps);
    const humans = ws.users.filter((u) => !u.is_bot && !u.deleted);
    const select = $("#user-switch");
    select.replaceChildren(...humans.map((u) => el("option", { value: u.id, selected: u.id === state.me }, realName(u))));
    $("#me-avatar").replaceWith(Object.assign(avatar(state.me, true), { id: "me-avatar" }));
  }

  function renderHeader() {
    const channel = channelOf(state.channel);
    const title = $("#conv-title");
    if (!channel) { title.textContent = ""; return; }
    if (channel.is_im) {
      const other = channel.user === state.me ? state.ws.app.bot_user_id : channel.user;
      title.replaceChildren(avatar(other, true), el("span", {}, isBot(other) ? state.ws.app.name : realName(user(other))),
        isBot(other) ? el("span", { class: "app-badge" }, "APP") : null);
      $("#conv-members").hidden = true;
      $("#tabs").hidden = !isBot(other) || state.ws.home_tab === false;
      for (const tab of document.querySelectorAll("#tabs .tab")) tab.classList.toggle("active", tab.dataset.tab === state.tab);
    } else {
      title.replaceChildren(el("span", {}, channel.is_private ? "🔒" : "#"), el("span", {}, channel.name));
      const members = $("#conv-members");
      members.hidden = false;
      members.innerHTML = `${PEOPLE_ICON}<span>${channel.members.length}</span>`;
      members.title = channel.members.map((id) => (isBot(id) ? state.ws.app.name : realName(user(id)))).join(", ");
      $("#tabs").hidden = true;
    }
    document.title = `${channel.is_im ? state.ws.app.name : `#${channel.name}`} · ${state.ws.team.name}`;
  }

  function renderBanner() {
    const banner = $("#banner");
    if (state.feedDown) {
      banner.textContent = "Reconnecting to the workspace…";
      banner.hidden = false;
    } else if (state.socketConnections === 0) {
      banner.textContent = `${state.ws.app.name} is not connected yet: what you send waits for it (is the bot running?).`;
      banner.hidden = false;
    } else {
      banner.hidden = true;
    }
  }

  // ------------------------------------------------------------------ conversations

  function conversationIntro(channel) {
    if (channel.is_im) {
      return el("div", { class: "intro" }, el("h2", {}, state.ws.app.name),
        el("p", {}, `This is your direct message with ${state.ws.app.name}. Share a dataset here or ask it something; type /finetune for its commands.`));
    }
    return el("div", { class: "intro" }, el("h2", {}, `#${channel.name}`),
      el("p", {}, channel.name === "fine-tuning"
        ? `Drop a dataset (JSONL, CSV, TSV, JSON or XLSX) here and ${state.ws.app.name} checks it and offers to fine-tune a model on it. Type /finetune for its commands, or @${state.ws.app.name} to talk to it.`
        : `This is the start of #${channel.name}.`));
  }

  async function loadConversation() {
    if (!state.channel || state.tab !== "messages") return;
    const channelId = state.channel;
    const data = await get("/_local/conversation", { channel: channelId, user: state.me });
    if (channelId !== state.channel) return;
    state.statuses = data.thread_status || {};
    state.shown = Object.fromEntries(data.messages.map((m) => [m.ts, m]));
    const container = $("#messages");
    const channel = channelOf(channelId);
    const items = [{ key: "intro", sig: `${channelId}:${state.me}`, render: () => conversationIntro(channel) }, ...listItems(data, false)];
    reconcile(container, items);
    keepAtBottom();
  }

  async function loadThread() {
    if (!state.thread) return;
    const [channelId, ts] = [state.channel, state.thread];
    let data;
    try {
      data = await get("/_local/conversation", { channel: channelId, user: state.me, thread_ts: ts });
    } catch (error) {
      closeThread();
      return;
    }
    if (channelId !== state.channel || ts !== state.thread) return;
    const channel = channelOf(channelId);
    $("#thread-sub").textContent = channel.is_im ? state.ws.app.name : `#${channel.name}`;
    const items = listItems(data, true);
    const status = (data.thread_status || {})[ts];
    if (status && status.status) {
      items.push({ key: "status", sig: status.status, render: () => el("div", { class: "typing", style: "padding:4px 16px" }, `${state.ws.app.name} ${status.status.replace(/[.…]+$/, "")}`) });
    }
    reconcile($("#thread-messages"), items);
    keepAtBottom();
  }

  async function loadHome() {
    if (state.tab !== "home") return;
    const data = await get("/_local/home", { user: state.me });
    const home = $("#home");
    const view = data.view;
    const key = view ? `${view.id}:${view.hash}` : "none";
    if (home.dataset.key === key) return;
    home.dataset.key = key;
    home.replaceChildren(view ? renderBlocks(view.blocks, { kind: "view", viewId: view.id })
      : el("div", { class: "empty" }, `${state.ws.app.name} has not published its Home tab yet…`));
  }

  function openChannel(id, tab) {
    const changed = state.channel !== id;
    state.channel = id;
    state.tab = tab || "messages";
    state.unread[id] = 0;
    if (changed) {
      closeThread(true);
      $("#messages").replaceChildren();
      stick.set($("#messages"), true);
    }
    const channel = channelOf(id);
    history.replaceState(null, "", `${location.pathname}${location.search}#${id}${state.tab === "home" ? "/home" : ""}`);
    $("#messages").hidden = state.tab !== "messages";
    $("#main-composer").hidden = state.tab !== "messages";
    $("#home").hidden = state.tab !== "home";
    mainComposer.setPlaceholder(channel.is_im ? `Message ${state.ws.app.name}` : `Message #${channel.name}`);
    renderSidebar();
    renderHeader();
    if (state.tab === "home") {
      $("#home").dataset.key = "";
      post("/_local/home/open", { user: state.me }).catch(() => {});
      loadHome();
    } else {
      loadConversation();
      mainComposer.focus();
    }
  }

  function openThread(ts) {
    state.thread = ts;
    $("#thread").hidden = false;
    $("#thread-messages").replaceChildren();
    stick.set($("#thread-messages"), true);
    history.replaceState(null, "", `${location.pathname}${location.search}#${state.channel}/${ts}`);
    loadThread();
    threadComposer.focus();
  }

  function closeThread(quiet) {
    state.thread = null;
    state.staged.thread = [];
    $("#thread").hidden = true;
    if (!quiet && state.channel) history.replaceState(null, "", `${location.pathname}${location.search}#${state.channel}`);
  }

  // ------------------------------------------------------------------ the composer

  function makeComposer(mount, where) {
    const textarea = el("textarea", { rows: "1", "aria-label": "Message", placeholder: "Message" });
    const fileInput = el("input", { type: "file", multiple: true, hidden: true, "aria-label": "Attach a file" });
    const staged = el("div", { class: "staged", hidden: true });
    const send = el("button", { type: "submit", class: "send", title: "Send (Enter)", "aria-label": "Send" },
      el("span", { html: '<svg width="16" height="16" viewBox="0 0 20 20" fill="currentColor"><path d="M2 17.5 18.5 10 2 2.5v5.8L13 10 2 11.7z"/></svg>' }));
    const attach = el("button", { type: "button", class: "icon-button attach", title: "Attach a file", "aria-label": "Attach a file", onclick: () => fileInput.click() },
      el("span", { html: '<svg width="18" height="18" viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="2" stroke-linecap="round"><path d="M21 11.5 12.5 20a5 5 0 0 1-7-7l9-9a3.3 3.3 0 0 1 4.7 4.7l-9 9a1.7 1.7 0 0 1-2.4-2.4L16 7.1"/></svg>' }));
    const popup = el("div", { class: "popup", hidden: true, role: "listbox" });
    const hint = el("span", { class: "hint" }, where === "main" ? "Enter to send · /finetune for commands · @ to mention · drop a file to share it" : "Reply in the thread");
    const form = el("form", { class: "composer", "data-composer": where },
      popup, el("div", { class: "composer-box" }, staged, textarea, el("div", { class: "composer-tools" }, attach, fileInput, hint, send)));
    mount.replaceChildren(form);
    let suggestions = [];
    let selected = 0;

    const update = () => {
      const list = state.staged[where];
      staged.hidden = !list.length;
      staged.replaceChildren(...list.map((file, i) => el("span", { class: "file-chip", "data-staged": file.name },
        el("span", { class: "file-icon" }, file.name.split(".").pop().slice(0, 4)),
        el("span", {}, el("div", { class: "file-name" }, file.name), el("div", { class: "file-sub" }, size(file.size))),
        el("button", { type: "button", class: "unstage", title: "Remove", onclick: () => { list.splice(i, 1); update(); } }, "✕"))));
      send.classList.toggle("ready", Boolean(textarea.value.trim() || list.length));
      textarea.style.height = "auto";
      textarea.style.height = `${Math.min(textarea.scrollHeight, 220)}px`;
      if (list.length && !textarea.value) textarea.placeholder = "Add a message, if you like, then press Enter to share";
      else textarea.placeholder = textarea.dataset.placeholder || "Message";
    };

    const showSuggestions = () => {
      const before = textarea.value.slice(0, textarea.selectionStart);
      const mention = before.match(/(^|\s)@([\w.-]*)$/);
      const command = where === "main" && before.match(/^\/([\w-]*)$/);
      suggestions = [];
      if (mention) {
        const query = mention[2].toLowerCase();
        const members = (channelOf(state.channel) || { members: [] }).members;
        suggestions = state.ws.users.filter((u) => !u.deleted && members.includes(u.id) && (u.name.toLowerCase().startsWith(query) || realName(u).toLowerCase().includes(query)))
          .map((u) => ({ label: isBot(u.id) ? u.name : realName(u), sub: `@${u.name}`, id: u.id, insert: `@${u.name} `, replace: mention[2].length + 1 }));
      } else if (command) {
        const query = command[1].toLowerCase();
        suggestions = (state.ws.commands || []).filter((c) => c.command.slice(1).startsWith(query))
          .map((c) => ({ label: c.command, sub: `${c.usage_hint || ""} — ${c.description || ""}`, insert: `${c.command} `, replace: command[1].length + 1, command: true }));
      }
      selected = 0;
      popup.hidden = !suggestions.length;
      if (!suggestions.length) return;
      popup.replaceChildren(el("div", { class: "popup-title" }, suggestions[0].command ? `Commands of ${state.ws.app.name}` : "People"),
        ...suggestions.map((s, i) => el("div", {
          class: `option ${i === selected ? "selected" : ""}`, role: "option",
          onmousedown: (event) => { event.preventDefault(); choose(i); },
        }, s.id ? avatar(s.id, true) : null, el("b", {}, s.label), el("span", { class: "sub" }, s.sub))));
    };
    const choose = (i) => {
      const s = suggestions[i];
      const at = textarea.selectionStart;
      textarea.value = textarea.value.slice(0, at - s.replace) + s.insert + textarea.value.slice(at);
      const caret = at - s.replace + s.insert.length;
      textarea.setSelectionRange(caret, caret);
      popup.hidden = true;
      suggestions = [];
      update();
    };

    textarea.addEventListener("input", () => { update(); showSuggestions(); });
    textarea.addEventListener("blur", () => setTimeout(() => { popup.hidden = true; }, 150));
    textarea.addEventListener("keydown", (event) => {
      if (!popup.hidden && suggestions.length) {
        if (event.key === "ArrowDown" || event.key === "ArrowUp") {
          event.preventDefault();
          selected = (selected + (event.key === "ArrowDown" ? 1 : suggestions.length - 1)) % suggestions.length;
          popup.querySelectorAll(".option").forEach((o, i) => o.classList.toggle("selected", i === selected));
          return;
        }
        if (event.key === "Tab" || (event.key === "Enter" && !event.shiftKey && !(suggestions[selected].command && textarea.value.trim() === suggestions[selected].insert.trim()))) {
          event.preventDefault();
          choose(selected);
          return;
        }
        if (event.key === "Escape") { popup.hidden = true; return; }
      }
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    fileInput.addEventListener("change", () => {
      state.staged[where].push(...fileInput.files);
      fileInput.value = "";
      update();
      textarea.focus();
    });
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const text = textarea.value.trim();
      const files = state.staged[where].slice();
      if (!text && !files.length) return;
      const threadTs = where === "thread" ? state.thread : null;
      textarea.value = "";
      state.staged[where] = [];
      update();
      popup.hidden = true;
      try {
        await sendMessage(text, files, threadTs);
      } catch (error) {
        textarea.value = text;
        state.staged[where] = files;
        update();
        toast(`Not sent: ${error.message}`, "error");
      }
    });

    return {
      stage(files) { state.staged[where].push(...files); update(); textarea.focus(); },
      focus() { textarea.focus(); },
      setPlaceholder(text) { textarea.dataset.placeholder = text; update(); },
      reset() { state.staged[where] = []; textarea.value = ""; update(); },
    };
  }

  /** What a person typed, encoded as Slack's client does: & < > escaped, @name → <@U…>, #channel → <#C…>. */
  function encode(text) {
    let encoded = text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    encoded = encoded.replace(/(^|[^\w])@(here|channel|everyone)\b/g, "$1<!$2>");
    encoded = encoded.replace(/(^|[^\w])@([\w.-]+)/g, (whole, lead, name) => {
      const u = userByName(name) || userByName(name.replace(/[.-]+$/, ""));
      return u ? `${lead}<@${u.id}>${name.slice(u.name.length)}` : whole;
    });
    encoded = encoded.replace(/(^|\s)#([\w-]+)/g, (whole, lead, name) => {
      const c = state.ws.channels.find((ch) => ch.name === name);
      return c ? `${lead}<#${c.id}|${name}>` : whole;
    });
    return encoded;
  }

  async function sendMessage(text, files, threadTs) {
    const channel = state.channel;
    const command = !files.length && text.match(/^(\/[\w-]+)(?:\s+([\s\S]*))?$/);
    if (command) {
      try {
        await post("/_local/commands", { channel, user: state.me, command: command[1], text: command[2] || "", wait: true });
      } catch (error) {
        toast(`${command[1]} is not a valid command here.`, "error");
      }
      return;
    }
    if (!files.length) {
      await post("/_local/messages", { channel, user: state.me, text: encode(text), thread_ts: threadTs });
      return;
    }
    let comment = encode(text);
    for (const file of files) {
      const content = await base64(file);
      await post("/_local/files", {
        channel, user: state.me, filename: file.name, content_base64: content, text: comment,
        thread_ts: threadTs, mimetype: file.type || null,
      });
      comment = "";
    }
  }

  function base64(file) {
    return new Promise((resolve, reject) => {
      const reader = new FileReader();
      reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
      reader.onerror = () => reject(reader.error);
      reader.readAsDataURL(file);
    });
  }

  // ------------------------------------------------------------------ drag and drop

  function setupDrop() {
    const overlay = $("#drop-overlay");
    let depth = 0;
    const hasFiles = (event) => event.dataTransfer && [...(event.dataTransfer.types || [])].includes("Files");
    const target = (event) => (event.target && event.target.closest && event.target.closest("#thread") && state.thread ? "thread" : "main");
    document.addEventListener("dragenter", (event) => {
      if (!hasFiles(event) || state.tab !== "messages") return;
      depth += 1;
      const channel = channelOf(state.channel);
      $("#drop-text").textContent = target(event) === "thread" ? "Drop to share in the thread" : `Drop to share in ${channel.is_im ? state.ws.app.name : `#${channel.name}`}`;
      overlay.hidden = false;
    });
    document.addEventListener("dragleave", () => { depth = Math.max(0, depth - 1); if (!depth) overlay.hidden = true; });
    document.addEventListener("dragover", (event) => { if (hasFiles(event)) event.preventDefault(); });
    document.addEventListener("drop", (event) => {
      depth = 0;
      overlay.hidden = true;
      if (!event.dataTransfer || !event.dataTransfer.files.length) return;
      event.preventDefault();
      if (state.tab !== "messages") return;
      (target(event) === "thread" ? threadComposer : mainComposer).stage([...event.dataTransfer.files]);
    });
  }

  // ------------------------------------------------------------------ confirm dialogs and modals

  function confirmDialog(confirm) {
    return new Promise((resolve) => {
      const done = (answer) => { overlay.remove(); document.removeEventListener("keydown", onKey); resolve(answer); };
      const onKey = (event) => { if (event.key === "Escape") done(false); };
      const danger = confirm.style === "danger";
      const overlay = el("div", { class: "overlay confirm-overlay", onclick: (event) => { if (event.target === overlay) done(false); } },
        el("div", { class: "modal confirm", role: "alertdialog", "aria-modal": "true" },
          el("header", {}, el("h2", { html: textObject(confirm.title) || "Are you sure?" })),
          el("div", { class: "modal-body mrkdwn", html: textObject(confirm.text) }),
          el("footer", {},
            el("button", { type: "button", class: "btn deny", onclick: () => done(false), html: textObject(confirm.deny) || "Cancel" }),
            el("button", { type: "button", class: `btn confirm-button ${danger ? "danger filled" : "primary"}`, onclick: () => done(true), html: textObject(confirm.confirm) || "Yes" }))));
      document.body.append(overlay);
      document.addEventListener("keydown", onKey);
      overlay.querySelector(".confirm-button").focus();
    });
  }

  function renderInput(block, ctx) {
    const element = block.element || {};
    const name = `${block.block_id}::${element.action_id}`;
    const label = el("label", { class: "input-label", for: name, html: textObject(block.label) }, block.optional ? el("span", { class: "optional" }, " (optional)") : null);
    let control;
    switch (element.type) {
      case "plain_text_input":
        control = element.multiline
          ? el("textarea", { id: name, name, placeholder: plain(element.placeholder), maxlength: element.max_length })
          : el("input", { type: "text", id: name, name, placeholder: plain(element.placeholder), maxlength: element.max_length });
        control.value = element.initial_value || "";
        break;
      case "number_input":
        control = el("input", { type: "number", id: name, name, step: element.is_decimal_allowed ? "any" : "1", min: element.min_value, max: element.max_value, placeholder: plain(element.placeholder) });
        control.value = element.initial_value || "";
        break;
      case "email_text_input":
      case "url_text_input":
        control = el("input", { type: element.type === "email_text_input" ? "email" : "url", id: name, name, placeholder: plain(element.placeholder) });
        control.value = element.initial_value || "";
        break;
      case "datepicker":
        control = el("input", { type: "date", id: name, name });
        control.value = element.initial_date || "";
        break;
      case "static_select":
      case "multi_static_select": {
        const multi = element.type === "multi_static_select";
        const initial = multi ? (element.initial_options || []).map((o) => o.value) : element.initial_option ? [element.initial_option.value] : [];
        control = el("select", { id: name, name, multiple: multi },
          multi ? null : el("option", { value: "", text: plain(element.placeholder) || "Select an option" }),
          allOptions(element).map((o) => el("option", { value: o.value, text: plain(o.text), selected: initial.includes(o.value) })));
        break;
      }
      case "radio_buttons":
      case "checkboxes": {
        const kind = element.type === "checkboxes" ? "checkbox" : "radio";
        const initial = kind === "checkbox" ? (element.initial_options || []).map((o) => o.value) : element.initial_option ? [element.initial_option.value] : [];
        control = el("div", { id: name, "data-group": kind }, (element.options || []).map((o, i) =>
          el("label", { class: "choice" }, el("input", { type: kind, name, value: o.value, checked: initial.includes(o.value), "data-index": i }), el("span", { html: textObject(o.text) }))));
        break;
      }
      default:
        control = el("div", { class: "block-unknown" }, `${element.type} (not available in the local workspace)`);
    }
    control.dataset.element = JSON.stringify({ type: element.type, action_id: element.action_id });
    const error = (ctx.errors || {})[block.block_id];
    return el("div", { class: `block input-block ${error ? "has-error" : ""}`, "data-block-type": "input", "data-block-id": block.block_id },
      label, control,
      block.hint ? el("div", { class: "input-hint", html: textObject(block.hint) }) : null,
      el("div", { class: "input-error", "data-error-for": block.block_id, hidden: !error }, error || ""));
  }

  /** The modal's `state.values`, as Slack reports them. */
  function modalValues(modal, view) {
    const values = {};
    for (const block of view.blocks) {
      if (block.type !== "input" || !block.element) continue;
      const element = block.element;
      const name = `${block.block_id}::${element.action_id}`;
      const options = allOptions(element);
      const byValue = (value) => options.find((o) => o.value === value) || null;
      let value;
      const control = modal.querySelector(`[id="${CSS.escape(name)}"]`);
      if (!control) continue;
      switch (element.type) {
        case "static_select": value = { type: element.type, selected_option: byValue(control.value) }; break;
        case "multi_static_select": value = { type: element.type, selected_options: [...control.selectedOptions].map((o) => byValue(o.value)) }; break;
        case "radio_buttons": {
          const chosen = control.querySelector("input:checked");
          value = { type: element.type, selected_option: chosen ? byValue(chosen.value) : null };
          break;
        }
        case "checkboxes": value = { type: element.type, selected_options: [...control.querySelectorAll("input:checked")].map((c) => byValue(c.value)) }; break;
        case "datepicker": value = { type: element.type, selected_date: control.value || null }; break;
        default: value = { type: element.type, value: control.value === "" ? null : control.value };
      }
      values[block.block_id] = { ...(values[block.block_id] || {}), [element.action_id]: value };
    }
    return values;
  }

  async function loadViews() {
    const data = await get("/_local/views", { user: state.me });
    const stack = data.views || [];
    const root = $("#modal-root");
    const view = stack[stack.length - 1];
    const key = view ? `${view.id}:${view.hash}` : null;
    if (key === state.modalKey) return;
    state.modalKey = key;
    if (!view) { root.replaceChildren(); return; }
    const errors = state.modalErrors[view.id] || {};
    const ctx = { kind: "view", viewId: view.id, errors };
    const submit = el("button", { type: "submit", class: "btn primary modal-submit", html: textObject(view.submit) || "Submit" });
    const close = () => post(`/_local/views/${encodeURIComponent(view.id)}/close`, { user: state.me }).then(() => refresh("views")).catch((e) => toast(e.message, "error"));
    const form = el("form", { class: "modal", role: "dialog", "aria-modal": "true", "data-view-id": view.id, "data-callback-id": view.callback_id },
      el("header", {}, el("span", { class: "avatar bot small app-icon", html: BOT_LOGO }), el("h2", { html: textObject(view.title) }),
        el("button", { type: "button", class: "icon-button modal-x", title: "Close", "aria-label": "Close", onclick: close }, "✕")),
      el("div", { class: "modal-error", hidden: true }),
      el("div", { class: "modal-body" }, renderBlocks(view.blocks, ctx)),
      el("footer", {}, el("button", { type: "button", class: "btn modal-close", onclick: close, html: textObject(view.close) || "Cancel" }),
        view.submit ? submit : null));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      submit.disabled = true;
      submit.classList.add("busy");
      form.querySelector(".modal-error").hidden = true;
      try {
        const answer = await post(`/_local/views/${encodeURIComponent(view.id)}/submit`, { user: state.me, values: modalValues(form, view) });
        if (answer.response_action === "errors") {
          state.modalErrors[view.id] = answer.errors || {};
          showErrors(form, answer.errors || {});
        } else if (answer.response_action === "timeout") {
          const banner = form.querySelector(".modal-error");
          banner.textContent = `${state.ws.app.name} did not respond. Try again in a moment.`;
          banner.hidden = false;
        } else {
          delete state.modalErrors[view.id];
          refresh("views");
        }
      } catch (error) {
        toast(`Not submitted: ${error.message}`, "error");
      } finally {
        submit.disabled = false;
        submit.classList.remove("busy");
      }
    });
    root.replaceChildren(el("div", { class: "overlay modal-overlay", onkeydown: (event) => { if (event.key === "Escape") close(); } }, form));
    const first = form.querySelector("input, textarea, select");
    if (first) first.focus();
  }

  function showErrors(form, errors) {
    for (const block of form.querySelectorAll(".input-block")) {
      const message = errors[block.dataset.blockId];
      block.classList.toggle("has-error", Boolean(message));
      const node = block.querySelector(".input-error");
      node.innerHTML = message ? mrkdwn(message) : "";
      node.hidden = !message;
    }
    const first = form.querySelector(".input-block.has-error input, .input-block.has-error textarea, .input-block.has-error select");
    if (first) first.focus();
  }

  // ------------------------------------------------------------------ live updates

  const pending = new Set();
  let timer = null;
  let running = false;
  function refresh(...parts) {
    parts.forEach((p) => pending.add(p));
    if (!timer) timer = setTimeout(flush, 40);
  }
  async function flush() {
    timer = null;
    if (running) { timer = setTimeout(flush, 60); return; }
    running = true;
    const parts = new Set(pending);
    pending.clear();
    try {
      if (parts.has("workspace")) {
        state.ws = await get("/_local/workspace");
        renderSidebar();
        renderHeader();
      }
      const jobs = [];
      if (parts.has("conversation")) jobs.push(loadConversation());
      if (parts.has("thread")) jobs.push(loadThread());
      if (parts.has("views")) jobs.push(loadViews());
      if (parts.has("home")) jobs.push(loadHome());
      await Promise.all(jobs);
    } catch (error) {
      console.warn("refresh failed", error);
    } finally {
      running = false;
    }
  }

  function onChange(change) {
    const here = change.channel && change.channel === state.channel;
    switch (change.kind) {
      case "message_posted":
      case "message_changed":
      case "message_deleted":
      case "message_streamed":
      case "reaction_added":
      case "thread_status":
        if (here) refresh("conversation", ...(state.thread ? ["thread"] : []));
        else if (change.kind === "message_posted" && !change.thread_ts && change.channel) {
          state.unread[change.channel] = (state.unread[change.channel] || 0) + 1;
          renderSidebar();
        }
        break;
      case "ephemeral":
      case "ephemeral_replaced":
      case "ephemeral_deleted":
        if (here && change.user === state.me) refresh("conversation", ...(state.thread ? ["thread"] : []));
        break;
      case "view_opened":
      case "view_closed":
        if (change.user === state.me) refresh("views");
        break;
      case "view_updated":
        refresh("views", ...(state.tab === "home" ? ["home"] : []));
        break;
      case "home_published":
        if (change.user === state.me) refresh("home");
        break;
      case "user_added":
      case "channel_added":
      case "member_joined":
        refresh("workspace", "conversation");
        break;
      case "file_uploaded":
      case "file_deleted":
        refresh("conversation", ...(state.thread ? ["thread"] : []));
        break;
      default:
        break;
    }
  }

  function connectFeed() {
    const feed = new EventSource("/_local/stream");
    feed.addEventListener("hello", (event) => {
      const hello = JSON.parse(event.data);
      state.feedDown = false;
      state.socketConnections = hello.socket_connections;
      refresh("workspace", "conversation", "thread", "views", "home");
      renderBanner();
    });
    feed.addEventListener("status", (event) => {
      const status = JSON.parse(event.data);
      if (status.socket_connections !== state.socketConnections) {
        state.socketConnections = status.socket_connections;
        renderSidebar();
        renderBanner();
      }
    });
    feed.onmessage = (event) => onChange(JSON.parse(event.data));
    feed.onerror = () => { state.feedDown = true; renderBanner(); };
    window.addEventListener("beforeunload", () => feed.close());
  }

  // ------------------------------------------------------------------ start

  let mainComposer;
  let threadComposer;

  async function start() {
    state.ws = await get("/_local/workspace");
    state.socketConnections = state.ws.socket_connections;
    const humans = state.ws.users.filter((u) => !u.is_bot && !u.deleted);
    const asked = new URLSearchParams(location.search).get("as") || localStorage.getItem("me");
    const chosen = humans.find((u) => u.name === asked || u.id === asked) || humans[0];
    state.me = chosen.id;
    mainComposer = makeComposer($("#main-composer"), "main");
    threadComposer = makeComposer($("#thread-composer"), "thread");
    watchScroll($("#messages"));
    watchScroll($("#thread-messages"));
    setupDrop();
    $("#thread-close").addEventListener("click", () => closeThread());
    for (const tab of document.querySelectorAll("#tabs .tab")) tab.addEventListener("click", () => openChannel(state.channel, tab.dataset.tab));
    $("#user-switch").addEventListener("change", (event) => {
      state.me = event.target.value;
      localStorage.setItem("me", user(state.me).name);
      state.modalKey = null;
      state.unread = {};
      const url = new URL(location.href);
      url.searchParams.set("as", user(state.me).name);
      history.replaceState(null, "", url);
      const current = channelOf(state.channel);
      openChannel(current && current.is_im ? botDm().id : state.channel, state.tab);
      refresh("views");
    });
    document.addEventListener("click", (event) => {
      const link = event.target.closest && event.target.closest("a.channel-link");
      if (link) { event.preventDefault(); openChannel(link.dataset.channel); }
    });
    const [hashChannel, hashRest] = location.hash.slice(1).split("/");
    const fineTuning = state.ws.channels.find((c) => c.name === "fine-tuning" && c.members.includes(state.me));
    const first = (hashChannel && channelOf(hashChannel) && hashChannel) || (fineTuning && fineTuning.id)
      || state.ws.channels.find((c) => !c.is_im && c.members.includes(state.me)).id;
    openChannel(first, hashRest === "home" ? "home" : "messages");
    if (hashRest && hashRest !== "home") openThread(hashRest);
    connectFeed();
  }

  start().catch((error) => {
    document.body.prepend(el("div", { class: "banner" }, `The workspace did not answer: ${error.message}`));
  });
})();
