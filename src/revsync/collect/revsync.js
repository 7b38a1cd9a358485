// revsync.js: first-party visitor, session, click ID and consent capture. No dependencies;
// every entry point catches its own errors, so nothing ever throws into the page.
// Full-line comments and indentation are stripped when served; C is the site's config:
// s site key, r consent required, f form capture, n cookie name, m session minutes,
// c the server sets the visitor cookie.
(function (w, d, C) {
try {
var R = w.revsync;
if (R && R.v) return;
var q = (R && R.q) || [], st = {}, pend = [], on = 0, L = location;
var sc = d.currentScript;
var E = sc ? sc.src.replace(/\/v1\/revsync\.js.*$/, "") : "";
R = w.revsync = function (m, a) {
try { R[m] && R[m](a); } catch (e) {}
};
R.v = 1;
var ck = function (k) {
var m = d.cookie.match("(?:^|; )" + k + "=([^;]*)");
return m ? decodeURIComponent(m[1]) : null;
};
// the broadest domain that takes the cookie: example.com for www.example.com
var set = function (k, v, days) {
var h = L.hostname.split("."), i, a = k + "=" + encodeURIComponent(v) + "; path=/; max-age=" +
days * 86400 + "; SameSite=Lax" + (L.protocol == "https:" ? "; Secure" : "");
for (i = h.length - 2; i >= 0; i--) {
d.cookie = a + "; domain=" + h.slice(i).join(".");
if (ck(k) == v) return;
}
d.cookie = a;
};
var ls = function (k, v) {
try {
if (v == null) return JSON.parse(localStorage.getItem(k));
localStorage.setItem(k, JSON.stringify(v));
} catch (e) {}
};
var rid = function () {
var a = new Uint8Array(12), s = "", i;
crypto.getRandomValues(a);
for (i = 0; i < 12; i++) s += (a[i] + 256).toString(16).slice(1);
return s;
};
// Google Consent Mode v2: the page's gtag('consent', ...) calls, then revsync.consent()
var K = ["ad_user_data", "ad_personalization", "analytics_storage", "ad_storage"];
var cons = function () {
var c = {}, o = {}, l = w.dataLayer || [], i, k;
for (i = 0; i < l.length; i++)
if (l[i] && l[i][0] == "consent" && l[i][2]) for (k in l[i][2]) c[k] = l[i][2][k];
for (k in st) c[k] = st[k];
for (i = 0; i < 4; i++) if (/^(granted|denied)$/.test(c[K[i]])) o[K[i]] = c[K[i]];
return o;
};
var ok = function (c) {
return c.analytics_storage != "denied" && (!C.r || c.analytics_storage == "granted");
};
var send = function (p, b) {
var c = cons();
if (!ok(c)) return;
b.site = C.s;
b.vid = R.vid;
b.sid = R.sid;
b.consent = c;
b = JSON.stringify(b);
try {
if (navigator.sendBeacon(E + p, b)) return;
} catch (e) {}
try {
fetch(E + p, { method: "POST", body: b, keepalive: true, credentials: "include" })
["catch"](function () {});
} catch (e) {}
};
var start = function () {
var c = cons();
if (c.analytics_storage == "denied" && ck(C.n)) set(C.n, "", -1);
if (on || !ok(c)) return;
on = 1;
var P = new URLSearchParams(L.search), t = Date.now(), key = "", fb = P.get("fbclid"),
fbc = ck("_fbc"), S = ls("_rss"), vid = ck(C.n) || rid(), n;
if (!C.c || !ck(C.n)) set(C.n, vid, 730);
["gclid", "gbraid", "wbraid", "fbclid", "msclkid", "ttclid", "li_fat_id", "utm_source",
"utm_medium", "utm_campaign"].forEach(function (k) {
if (P.get(k)) key += k + "=" + P.get(k) + "&";
});
// Meta's format: fb.1.<ms>.<fbclid>, kept while it is this click's
if (fb && c.ad_storage != "denied" && (!fbc || fbc.split(".").slice(3).join(".") != fb)) set("_fbc", fbc = "fb.1." + t + "." + fb, 90);
n = !S || t - S.t > C.m * 6e4 || (key && key != S.k);
if (n) S = { i: rid(), k: key };
S.t = t;
ls("_rss", S);
R.vid = vid;
R.sid = S.i;
if (n)
send("/v1/collect", {
url: L.href.slice(0, 4096), ref: d.referrer.slice(0, 4096) || null,
title: d.title.slice(0, 500), ga: ck("_ga"), fbp: ck("_fbp"), fbc: fbc
});
while (pend.length) R.identify(pend.shift());
};
R.identify = function (o) {
try {
o = o || {};
if (!on) return pend.push(o);
send("/v1/identify", {
email: o.email || null, phone: o.phone || null, crmId: o.crmId ? "" + o.crmId : null,
event: o.event || "form"
});
} catch (e) {}
};
R.consent = function (o) {
try {
for (var k in o) st[k] = o[k];
start();
} catch (e) {}
};
if (C.f)
d.addEventListener("submit", function (e) {
try {
var f = e.target.elements, i, el, n, em, ph;
for (i = 0; i < f.length; i++) {
el = f[i];
n = (el.name + " " + el.type + " " + el.autocomplete).toLowerCase();
if (!em && /mail/.test(n) && el.value) em = el.value;
if (!ph && /tel|phone|mobile/.test(n) && el.value) ph = el.value;
}
if (em || ph) R.identify({ email: em, phone: ph, event: "form" });
} catch (x) {}
}, true);
// a consent update through gtag/dataLayer starts capture at once
var dl = w.dataLayer = w.dataLayer || [], push = dl.push;
dl.push = function () {
var r = push.apply(dl, arguments);
try { start(); } catch (e) {}
return r;
};
start();
while (q.length) R.apply(null, q.shift());
} catch (e) {}
})(window, document, __CONFIG__);
