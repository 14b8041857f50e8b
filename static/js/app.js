// webhooker UI components for the Alpine.js CSP build (@alpinejs/csp).
//
// The CSP build never uses eval/new Function: attribute expressions are
// parsed by a small interpreter that can read scope properties, call
// methods and apply simple operators, but cannot reach globals (window,
// document, confirm, navigator, ...). So all behaviour lives here, and
// templates only reference component properties, getters and methods by
// name, e.g. x-data="disclosure", @click="toggle", x-show="open".
//
// This file must load BEFORE alpine-csp.min.js (both `defer`) so the
// alpine:init listener below is registered before Alpine starts.

(function () {
    "use strict";

    var MINUTE = 60;
    var HOUR = 60 * MINUTE;
    var DAY = 24 * HOUR;

    function plural(n, unit) {
        return n + " " + unit + (n === 1 ? "" : "s");
    }

    function isoDate(d) {
        // YYYY-MM-DD in UTC (ISO dates, per project convention).
        return d.toISOString().slice(0, 10);
    }

    // Relative description of an ISO-8601 timestamp against `now`.
    // Past: "just now", "3 minutes ago", "2 hours ago", "5 days ago".
    // Future: "in a few seconds", "in 3 minutes", ... (e.g. next retry).
    // Beyond 30 days either way: the date as YYYY-MM-DD.
    function describe(iso, now) {
        var d = new Date(iso);
        if (isNaN(d.getTime())) {
            return iso || "";
        }
        var diff = Math.round((now - d.getTime()) / 1000);
        var future = diff < 0;
        var secs = Math.abs(diff);
        var text;
        if (secs < 45) {
            return future ? "in a few seconds" : "just now";
        } else if (secs < 90) {
            text = "1 minute";
        } else if (secs < HOUR) {
            text = plural(Math.round(secs / MINUTE), "minute");
        } else if (secs < DAY) {
            text = plural(Math.round(secs / HOUR), "hour");
        } else if (secs < 30 * DAY) {
            text = plural(Math.round(secs / DAY), "day");
        } else {
            return isoDate(d);
        }
        return future ? "in " + text : text + " ago";
    }

    // Fallback copy for non-secure contexts (plain http on a LAN), where
    // navigator.clipboard is unavailable.
    function legacyCopy(text) {
        var ta = document.createElement("textarea");
        ta.value = text;
        ta.setAttribute("readonly", "");
        ta.style.position = "fixed";
        ta.style.top = "-1000px";
        document.body.appendChild(ta);
        ta.select();
        var ok = false;
        try {
            ok = document.execCommand("copy");
        } catch (e) {
            ok = false;
        }
        document.body.removeChild(ta);
        return ok;
    }

    function copyText(text) {
        if (navigator.clipboard && window.isSecureContext) {
            return navigator.clipboard.writeText(text).then(
                function () {
                    return true;
                },
                function () {
                    return legacyCopy(text);
                },
            );
        }
        return Promise.resolve(legacyCopy(text));
    }

    // Times shown absolute: in the browser's zone, or UTC once toggled (kept in
    // localStorage, announced to every absTime with a window event).
    var TZ_KEY = "webhooker.tz";
    var TZ_EVENT = "webhooker-tz";

    function utcWanted() {
        try {
            return window.localStorage.getItem(TZ_KEY) === "utc";
        } catch (e) {
            return false;
        }
    }

    function pad(n, width) {
        var s = String(n);
        while (s.length < width) {
            s = "0" + s;
        }
        return s;
    }

    // "2026-01-02 04:04:05.678 GMT+1" (local) or "2026-01-02 03:04:05.678 UTC".
    function absolute(iso, utc) {
        var d = new Date(iso);
        if (isNaN(d.getTime())) {
            return iso || "";
        }
        var parts = utc
            ? [d.getUTCFullYear(), d.getUTCMonth() + 1, d.getUTCDate(), d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
            : [d.getFullYear(), d.getMonth() + 1, d.getDate(), d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
        var zone = "UTC";
        if (!utc) {
            var offset = -d.getTimezoneOffset();
            var sign = offset >= 0 ? "+" : "-";
            offset = Math.abs(offset);
            zone = offset === 0 ? "UTC" : "UTC" + sign + pad(Math.floor(offset / 60), 2) + ":" + pad(offset % 60, 2);
        }
        return (
            parts[0] + "-" + pad(parts[1], 2) + "-" + pad(parts[2], 2) + " " +
            pad(parts[3], 2) + ":" + pad(parts[4], 2) + ":" + pad(parts[5], 2) + "." + pad(parts[6], 3) +
            " " + zone
        );
    }

    document.addEventListener("alpine:init", function () {
        var Alpine = window.Alpine;

        // <time datetime="…" x-data="absTime" x-text="text">2026-01-02 03:04:05 UTC</time>
        Alpine.data("absTime", function () {
            return {
                text: "",
                listener: null,
                init: function () {
                    var self = this;
                    var iso = this.$el.getAttribute("datetime") || "";
                    this.$el.setAttribute("title", absolute(iso, true));
                    this.text = absolute(iso, utcWanted());
                    this.listener = function () {
                        self.text = absolute(iso, utcWanted());
                    };
                    window.addEventListener(TZ_EVENT, this.listener);
                },
                destroy: function () {
                    window.removeEventListener(TZ_EVENT, this.listener);
                },
            };
        });

        // <button x-data="tzToggle" @click="toggle" x-text="label">Show times in UTC</button>
        Alpine.data("tzToggle", function () {
            return {
                utc: false,
                init: function () {
                    this.utc = utcWanted();
                },
                get label() {
                    return this.utc ? "Show local times" : "Show times in UTC";
                },
                toggle: function () {
                    this.utc = !this.utc;
                    try {
                        window.localStorage.setItem(TZ_KEY, this.utc ? "utc" : "local");
                    } catch (e) {
                        // No storage (private mode): the toggle lasts for this page.
                    }
                    window.dispatchEvent(new CustomEvent(TZ_EVENT));
                },
            };
        });

        // A region of a page that follows the webhook's live stream:
        // <div id="live" x-data="livePage" data-stream="/webhooks/…/events/stream"
        //      data-live="true" [data-event-id="…"]>…</div>
        // On each new event (or a delivery of this event) the page is fetched again
        // and this region's content swapped for the new one; when the new region says
        // data-live="false" (nothing pending any more) the stream is closed.
        // What a live swap must not undo: disclosures the reader opened or closed keep
        // their state (a delivery finishing must not fold the event being read, nor
        // reopen an attempt the reader closed) and the focus stays on its control.
        // Elements are matched by ids the server renders the same way each time: a
        // toggle by the id it controls, a <details> and any other control by its own.
        var focused = null;
        function keepViewState(root, fresh) {
            var open = root.querySelectorAll('[aria-controls][aria-expanded="true"]');
            for (var i = 0; i < open.length; i++) {
                var id = open[i].getAttribute("aria-controls");
                var toggle = fresh.querySelector('[aria-controls="' + CSS.escape(id) + '"]');
                var box = toggle && toggle.closest('[x-data="disclosure"]');
                if (box) {
                    box.setAttribute("data-open", "true");
                }
            }
            var details = root.querySelectorAll("details[id]");
            for (var j = 0; j < details.length; j++) {
                var same = fresh.querySelector("#" + CSS.escape(details[j].id));
                if (same) {
                    same.open = details[j].open;
                }
            }
            focused = null;
            var active = document.activeElement;
            if (active && active !== root && root.contains(active)) {
                var holder = active.id ? active : active.closest("[id]");
                if (active.getAttribute("aria-controls")) {
                    focused = '[aria-controls="' + CSS.escape(active.getAttribute("aria-controls")) + '"]';
                } else if (holder && root.contains(holder) && holder !== root) {
                    // A control without an id (a <summary>) is found again as the same
                    // kind of element inside the same element with an id.
                    focused = "#" + CSS.escape(holder.id) + (holder === active ? "" : " " + active.tagName.toLowerCase());
                }
            }
        }
        function restoreFocus(root) {
            if (focused) {
                var again = root.querySelector(focused);
                if (again) {
                    again.focus();
                }
                focused = null;
            }
        }

        Alpine.data("livePage", function () {
            return {
                source: null,
                timer: null,
                busy: false,
                again: false,
                init: function () {
                    if (this.$el.getAttribute("data-live") === "true" && window.EventSource) {
                        this.connect();
                    }
                },
                connect: function () {
                    var self = this;
                    var eventId = this.$el.getAttribute("data-event-id");
                    this.source = new EventSource(this.$el.getAttribute("data-stream"));
                    // What changed between rendering the page and subscribing (or while a
                    // dropped stream reconnected) has no message: look once on opening.
                    this.source.addEventListener("open", function () {
                        self.schedule();
                    });
                    this.source.addEventListener("message", function () {
                        if (!eventId) {
                            self.schedule();
                        }
                    });
                    this.source.addEventListener("delivery", function (e) {
                        var data = null;
                        try {
                            data = JSON.parse(e.data);
                        } catch (err) {
                            data = null;
                        }
                        if (!eventId || (data && data.event_id === eventId)) {
                            self.schedule();
                        }
                    });
                },
                schedule: function () {
                    var self = this;
                    if (this.timer) {
                        return;
                    }
                    this.timer = setTimeout(function () {
                        self.timer = null;
                        self.refresh();
                    }, 250);
                },
                refresh: function () {
                    var self = this;
                    if (this.busy) {
                        this.again = true;
                        return;
                    }
                    this.busy = true;
                    var root = this.$el;
                    fetch(window.location.href, { credentials: "same-origin" })
                        .then(function (r) {
                            return r.ok ? r.text() : null;
                        })
                        .then(function (html) {
                            if (html === null) {
                                return;
                            }
                            var doc = new DOMParser().parseFromString(html, "text/html");
                            var fresh = doc.getElementById(root.id);
                            if (!fresh) {
                                return;
                            }
                            keepViewState(root, fresh);
                            root.innerHTML = fresh.innerHTML;
                            restoreFocus(root);
                            if (fresh.getAttribute("data-live") !== "true") {
                                self.close();
                            }
                        })
                        .catch(function () {})
                        .then(function () {
                            self.busy = false;
                            if (self.again) {
                                self.again = false;
                                self.schedule();
                            }
                        });
                },
                close: function () {
                    if (this.source) {
                        this.source.close();
                        this.source = null;
                    }
                },
                destroy: function () {
                    this.close();
                    if (this.timer) {
                        clearTimeout(this.timer);
                    }
                },
            };
        });

        // <time datetime="2026-01-02T03:04:05Z" title="2026-01-02 03:04:05 UTC"
        //       x-data="relativeTime" x-text="text">2026-01-02 03:04 UTC</time>
        Alpine.data("relativeTime", function (iso) {
            return {
                text: "",
                iso: "",
                timer: null,
                init: function () {
                    this.iso = iso || this.$el.getAttribute("datetime") || "";
                    this.text = this.$el.textContent.trim();
                    this.refresh();
                    var self = this;
                    this.timer = setInterval(function () {
                        self.refresh();
                    }, 30000);
                },
                refresh: function () {
                    if (this.iso) {
                        this.text = describe(this.iso, Date.now());
                    }
                },
                destroy: function () {
                    if (this.timer) {
                        clearInterval(this.timer);
                        this.timer = null;
                    }
                },
            };
        });

        // <div x-data="copyField">
        //   <input x-ref="value" readonly value="...">
        //   <button type="button" @click="copy" x-text="label">Copy</button>
        // </div>
        // Or without an input: <button x-data="copyField" data-copy="..."
        //   @click="copy" x-text="label">Copy</button>
        Alpine.data("copyField", function () {
            return {
                label: "Copy",
                copied: false,
                timer: null,
                copy: function () {
                    var text = null;
                    var ref = this.$refs && this.$refs.value;
                    if (ref) {
                        text = ref.value !== undefined ? ref.value : ref.textContent;
                    }
                    var from = this.$el.getAttribute("data-copy-from");
                    if ((text === null || text === undefined) && from) {
                        // The text of a block elsewhere on the page (a body).
                        var box = document.getElementById(from);
                        var source = box && box.querySelector("[data-copy-text]");
                        text = source ? source.textContent : null;
                    }
                    if (text === null || text === undefined) {
                        text = this.$el.getAttribute("data-copy");
                    }
                    if ((text === null || text === undefined) && this.$root) {
                        text = this.$root.getAttribute("data-copy");
                    }
                    if (text === null || text === undefined) {
                        return;
                    }
                    if (ref && typeof ref.select === "function") {
                        ref.select();
                    }
                    var self = this;
                    copyText(String(text)).then(function (ok) {
                        self.copied = !!ok;
                        self.label = ok ? "Copied" : "Press Ctrl+C";
                        if (self.timer) {
                            clearTimeout(self.timer);
                        }
                        self.timer = setTimeout(function () {
                            self.copied = false;
                            self.label = "Copy";
                            self.timer = null;
                        }, 1500);
                    });
                },
                destroy: function () {
                    if (this.timer) {
                        clearTimeout(this.timer);
                    }
                },
            };
        });


        // <form method="post" action="…" x-data="confirmSubmit"
        //       data-confirm="Delete webhook “x”? This cannot be undone.">
        // Listens for submit itself: no @submit attribute needed.
        Alpine.data("confirmSubmit", function () {
            return {
                message: "",
                init: function () {
                    var form = this.$el;
                    this.message = form.getAttribute("data-confirm") || "Are you sure?";
                    var self = this;
                    form.addEventListener("submit", function (event) {
                        if (!window.confirm(self.message)) {
                            event.preventDefault();
                            event.stopImmediatePropagation();
                        }
                    });
                },
            };
        });

        // <tbody x-data="disclosure">            (data-open="true" to start open)
        //   <tr><td><button @click="toggle" :aria-expanded="open">…</button></td></tr>
        //   <tr x-show="open" x-cloak><td colspan="5">…details…</td></tr>
        // </tbody>
        Alpine.data("disclosure", function () {
            return {
                open: false,
                get closed() {
                    return !this.open;
                },
                init: function () {
                    this.open = this.$el.getAttribute("data-open") === "true";
                },
                toggle: function () {
                    this.open = !this.open;
                },
                show: function () {
                    this.open = true;
                },
                hide: function () {
                    this.open = false;
                },
            };
        });

        // Kind-aware target form. Fields for other kinds are hidden AND
        // disabled (disabled controls are not submitted). Easiest markup: one
        // <fieldset> per kind, e.g.
        // <form x-data="targetForm" data-kind="http" method="post" …>
        //   <select name="kind" x-model="kind">…</select>
        //   <fieldset x-show="isHttp" :disabled="notHttp">url, timeout_secs, …</fieldset>
        //   <fieldset x-show="isSlack" :disabled="notSlack">url</fieldset>
        // </form>
        Alpine.data("targetForm", function () {
            return {
                kind: "http",
                init: function () {
                    var k = this.$el.getAttribute("data-kind");
                    if (!k) {
                        var sel = this.$el.querySelector("select[name=kind]");
                        k = sel ? sel.value : "";
                    }
                    this.kind = k || "http";
                },
                isKind: function (k) {
                    return this.kind === k;
                },
                get isHttp() {
                    return this.kind === "http";
                },
                get isSlack() {
                    return this.kind === "slack";
                },
                get isLog() {
                    return this.kind === "log";
                },
                get isDatabase() {
                    return this.kind === "database";
                },
                get notHttp() {
                    return this.kind !== "http";
                },
                get notSlack() {
                    return this.kind !== "slack";
                },
                get notLog() {
                    return this.kind !== "log";
                },
                get notDatabase() {
                    return this.kind !== "database";
                },
                // Kinds without any extra field (for a "no settings" hint).
                get hasNoFields() {
                    return this.kind === "log" || this.kind === "database";
                },
            };
        });

        // Webhook form, sender verification: the fields the chosen kind needs are shown
        // and enabled, the others hidden and disabled (so not submitted).
        // <fieldset x-data="verificationForm" data-kind="github" data-current="github">
        //   <select x-model="kind">…</select>
        //   <div x-show="usesSecret"><input :disabled="noSecret"></div> …
        var SECRET_KINDS = ["github", "gitea", "stripe", "slack", "standard_webhooks"];
        Alpine.data("verificationForm", function () {
            return {
                kind: "none",
                current: "",
                init: function () {
                    this.kind = this.$el.getAttribute("data-kind") || "none";
                    this.current = this.$el.getAttribute("data-current") || "";
                },
                get usesSecret() {
                    return SECRET_KINDS.indexOf(this.kind) >= 0;
                },
                get noSecret() {
                    return SECRET_KINDS.indexOf(this.kind) < 0;
                },
                // Editing, same kind: an empty secret field keeps the current secret.
                get keepsSecret() {
                    return this.kind === this.current && this.kind !== "none";
                },
                get isStandardWebhooks() {
                    return this.kind === "standard_webhooks";
                },
                get isStripe() {
                    return this.kind === "stripe";
                },
                get isSlack() {
                    return this.kind === "slack";
                },
                get isGitlab() {
                    return this.kind === "gitlab";
                },
                get notGitlab() {
                    return this.kind !== "gitlab";
                },
                get isHeader() {
                    return this.kind === "header";
                },
                get notHeader() {
                    return this.kind !== "header";
                },
                get isBasic() {
                    return this.kind === "basic";
                },
                get notBasic() {
                    return this.kind !== "basic";
                },
            };
        });

        // A secret shown masked, with Show/Hide and Copy:
        // <div x-data="secretField">
        //   <input :type="inputType" x-ref="value" readonly value="…">
        //   <button type="button" @click="toggle" x-text="toggleLabel">Show</button>
        //   <button type="button" @click="copy" x-text="label">Copy</button>
        // </div>
        Alpine.data("secretField", function () {
            return {
                shown: false,
                label: "Copy",
                timer: null,
                get inputType() {
                    return this.shown ? "text" : "password";
                },
                get toggleLabel() {
                    return this.shown ? "Hide" : "Show";
                },
                toggle: function () {
                    this.shown = !this.shown;
                },
                copy: function () {
                    var self = this;
                    copyText(String(this.$refs.value.value)).then(function (ok) {
                        self.label = ok ? "Copied" : "Press Ctrl+C";
                        if (self.timer) {
                            clearTimeout(self.timer);
                        }
                        self.timer = setTimeout(function () {
                            self.label = "Copy";
                            self.timer = null;
                        }, 1500);
                    });
                },
                destroy: function () {
                    if (this.timer) {
                        clearTimeout(this.timer);
                    }
                },
            };
        });

        // <div class="alert alert-success" role="status" x-data="flash" x-show="visible">
        //   <div>message</div>
        //   <button type="button" class="alert-dismiss" @click="dismiss" aria-label="Dismiss">×</button>
        // </div>
        Alpine.data("flash", function () {
            return {
                visible: true,
                dismiss: function () {
                    this.visible = false;
                },
            };
        });
    });
})();
