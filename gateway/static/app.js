// Chirp progressive enhancement: every page works without this file; it adds live updates, the composer's
// preview and counter, local times, deletes asked in a dialog (the confirm page without scripts) and live removal
// of deleted posts, likes, reposts and bookmarks sent in place, and a post page's counts kept live.
(function () {
  "use strict";

  function cookie(name) {
    var found = document.cookie.split("; ").find(function (c) { return c.indexOf(name + "=") === 0; });
    return found ? decodeURIComponent(found.slice(name.length + 1)) : "";
  }

  // Times: relative text kept fresh, exact local time on hover.
  function relative(date) {
    var s = (Date.now() - date.getTime()) / 1000;
    if (s < 45) return "now";
    if (s < 3600) return Math.max(1, Math.round(s / 60)) + "m";
    if (s < 86400) return Math.floor(s / 3600) + "h";
    if (s < 7 * 86400) return Math.floor(s / 86400) + "d";
    var opts = { month: "short", day: "numeric" };
    if (date.getFullYear() !== new Date().getFullYear()) opts.year = "numeric";
    return date.toLocaleDateString(undefined, opts);
  }
  function refreshTimes(root) {
    (root || document).querySelectorAll(".post-meta time[datetime]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) return;
      el.textContent = relative(date);
      el.title = date.toLocaleString(undefined, { dateStyle: "full", timeStyle: "long" });
    });
  }

  // Composer: a character counter and a live Markdown preview rendered by the server, as the post will be.
  function composer(form) {
    var area = form.querySelector("textarea");
    var counter = form.querySelector("[data-counter]");
    var preview = form.querySelector("[data-preview]");
    var submit = form.querySelector("button[type=submit]");
    var max = parseInt(counter.getAttribute("data-max"), 10);
    var timer = null, seq = 0;
    counter.hidden = false;
    function count() {
      var left = max - Array.from(area.value).length;
      counter.textContent = left < 0 ? Math.abs(left) + " too many" : left + " left";
      counter.classList.toggle("over", left < 0);
      submit.disabled = left < 0 || area.value.trim() === "";
    }
    function render() {
      var mine = ++seq, body = area.value;
      if (!body.trim()) { preview.hidden = true; preview.innerHTML = ""; return; }
      fetch("/api/preview", {
        method: "POST",
        credentials: "same-origin",
        headers: { "Content-Type": "application/json", "X-CSRF-Token": cookie("chirp_csrf") },
        body: JSON.stringify({ body: body })
      }).then(function (r) { return r.ok ? r.json() : null; }).then(function (data) {
        if (!data || mine !== seq) return;
        preview.innerHTML = data.html; // sanitized by the server's post renderer
        preview.hidden = false;
      }).catch(function () {});
    }
    area.addEventListener("input", function () {
      count();
      clearTimeout(timer);
      timer = setTimeout(render, 250);
    });
    area.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey) && !submit.disabled) form.requestSubmit();
    });
    count();
    if (area.value.trim()) render();
  }

  // The bell in the nav: the unread count the server rendered, then the one each `notifications` event brings.
  function setUnread(count) {
    document.querySelectorAll("[data-unread]").forEach(function (badge) {
      badge.firstChild.textContent = String(count);
      badge.hidden = count === 0;
    });
  }

  // A post's like, repost and quote counts as the server has them now (a post page's stream sends them when
  // others like, repost or quote it); they also correct a count this page changed in place.
  function setCounts(counts) {
    var card = document.getElementById("post-" + counts.id);
    if (!card) return;
    [["like", counts.like_count], ["repost", counts.repost_count], ["quote", counts.quote_count]].forEach(function (pair) {
      card.querySelectorAll('.post-actions [data-count="' + pair[0] + '"]').forEach(function (count) {
        count.textContent = String(pair[1]);
        if (pair[0] === "quote") count.hidden = pair[1] === 0;
      });
    });
  }

  // Pages without posts to update (settings, notifications, people, …) still get a live bell: a stream that carries
  // only the viewer's unread count, so every tab holds one connection whatever the page.
  function bellOnly() {
    if (!window.EventSource || !document.querySelector("[data-unread]")) return;
    var source = new EventSource("/events?feed=bell");
    source.addEventListener("notifications", function (e) { setUnread(JSON.parse(e.data).unread); });
  }

  // Live updates: the page names what it shows, the server sends new posts that belong there.
  function live(banner) {
    if (!window.EventSource || new URLSearchParams(location.search).has("cursor")) return;
    var feed = banner.getAttribute("data-live-feed");
    var list = banner.parentNode.querySelector("[data-posts]");
    var button = banner.querySelector(".new-posts");
    var append = list.hasAttribute("data-append");
    var pending = [], resync = false;
    var url = "/events?feed=" + encodeURIComponent(feed) + "&since=" + encodeURIComponent(banner.getAttribute("data-live-since") || "");
    var source = new EventSource(url);

    function onPage(id) { return document.getElementById("post-" + id) !== null; }
    // A deleted post leaves the page (the post a page is about stays, marked deleted) and the pending ones.
    function removePost(id) {
      pending = pending.filter(function (p) { return p !== id; });
      show();
      var card = document.getElementById("post-" + id);
      if (!card) return;
      if (!card.classList.contains("focus")) { card.remove(); return; }
      card.classList.add("deleted");
      card.querySelector(".content").textContent = "This post was deleted.";
      var actions = card.querySelector(".post-actions");
      if (actions) actions.remove();
    }
    function show() {
      if (resync) button.textContent = "New posts may be available. Reload";
      else button.textContent = pending.length === 1 ? "1 new post" : pending.length + " new posts";
      button.hidden = !resync && pending.length === 0;
    }
    function fetchCard(id) {
      return fetch("/fragments/posts/" + encodeURIComponent(id), { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : ""; })
        .catch(function () { return ""; });
    }
    function insert(html, atEnd) {
      var holder = document.createElement("div");
      holder.innerHTML = html.trim();
      var card = holder.firstElementChild;
      if (!card || onPage(card.id.replace("post-", ""))) return null;
      var empty = list.querySelector(".empty");
      if (empty) empty.remove();
      card.classList.add("fresh");
      if (atEnd) list.appendChild(card); else list.insertBefore(card, list.firstChild);
      refreshTimes(card);
      return card;
    }

    source.addEventListener("post", function (e) {
      var notice = JSON.parse(e.data);
      if (onPage(notice.id) || pending.indexOf(notice.id) >= 0) return;
      if (append) {
        fetchCard(notice.id).then(function (html) { if (html) insert(html, true); });
      } else {
        pending.push(notice.id);
        show();
      }
    });
    source.addEventListener("post-deleted", function (e) { removePost(JSON.parse(e.data).id); });
    source.addEventListener("notifications", function (e) { setUnread(JSON.parse(e.data).unread); });
    source.addEventListener("counts", function (e) { setCounts(JSON.parse(e.data)); });
    source.addEventListener("resync", function () { resync = true; show(); });
    button.addEventListener("click", function () {
      if (resync) { location.reload(); return; }
      var ids = pending.slice();
      pending = [];
      show();
      Promise.all(ids.map(fetchCard)).then(function (cards) {
        var first = null;
        cards.forEach(function (html) { // oldest first, each inserted on top: the newest ends up first
          var card = html && insert(html, false);
          if (card) first = card;
        });
        if (first) {
          first.tabIndex = -1;
          first.focus({ preventScroll: true });
          first.scrollIntoView({ block: "nearest" });
        }
      });
    });
  }

  // An avatar that fails to load (offline, blocked, gone) becomes the initial placeholder the server draws.
  function avatarFallback(img) {
    function swap() {
      var span = document.createElement("span");
      var name = (img.getAttribute("data-name") || "?").replace(/^@/, "");
      span.className = img.className + " hue-" + (img.getAttribute("data-hue") || "0");
      span.setAttribute("aria-hidden", "true");
      span.textContent = name.charAt(0).toUpperCase();
      img.replaceWith(span);
    }
    if (img.complete && img.naturalWidth === 0) swap();
    else img.addEventListener("error", swap);
  }

  // Delete: a dialog instead of the confirm page, then the same form that page sends.
  function askDelete(e) {
    var link = e.target.closest && e.target.closest("a[data-delete]");
    if (!link || e.defaultPrevented || e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    e.preventDefault();
    if (!window.confirm("Delete this post? This cannot be undone.")) return;
    var form = document.createElement("form");
    form.method = "post";
    form.action = link.getAttribute("href");
    [["csrf_token", cookie("chirp_csrf")], ["next", location.pathname + location.search]].forEach(function (pair) {
      var input = document.createElement("input");
      input.type = "hidden";
      input.name = pair[0];
      input.value = pair[1];
      form.appendChild(input);
    });
    document.body.appendChild(form);
    form.submit();
  }

  // Repost, like, bookmark: the card's form sent in place. The button flips at once; a refused request flips it back.
  function setPressed(form, on) {
    var button = form.querySelector("button");
    var count = form.querySelector("[data-count]");
    if (count) count.textContent = Math.max(0, parseInt(count.textContent, 10) + (on ? 1 : -1));
    button.setAttribute("aria-pressed", on ? "true" : "false");
    form.querySelector("input[name=on]").value = on ? "0" : "1";
  }
  function interact(e) {
    var form = e.target.closest && e.target.closest("form[data-interact]");
    if (!form || e.defaultPrevented || !window.fetch) return;
    e.preventDefault();
    var on = form.querySelector("input[name=on]").value !== "0";
    var url = "/api" + form.getAttribute("action");
    setPressed(form, on);
    fetch(url, {
      method: on ? "POST" : "DELETE",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": cookie("chirp_csrf") }
    }).then(function (r) { if (!r.ok) setPressed(form, !on); }).catch(function () { setPressed(form, !on); });
  }

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes(document);
    setInterval(function () { refreshTimes(document); }, 60000);
    document.querySelectorAll("form[data-composer]").forEach(composer);
    var feeds = document.querySelectorAll("[data-live-feed]");
    feeds.forEach(live);
    // live() opens no stream on an older page (?cursor=): the bell gets its own then too.
    if (feeds.length === 0 || new URLSearchParams(location.search).has("cursor")) bellOnly();
    document.addEventListener("click", askDelete);
    document.addEventListener("submit", interact);
    document.querySelectorAll("img.avatar").forEach(avatarFallback);
  });
})();
