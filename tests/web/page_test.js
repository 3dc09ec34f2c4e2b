// The page (web/index.html) in a real browser: Debian's chromium driven by playwright-core
// (tests/integration/test_web_page.py installs it into BUILD and runs this with NODE_PATH).
// Input from the environment: PAGE_URL, EXPECT (JSON: the window, the filter and the
// figures the records give, computed by the Python test), SCREENSHOT (a PNG path). The
// browser runs in TZ (not UTC) so that local and UTC times differ; node runs in the same TZ
// and formats the expected local times itself. Exit 0 when every check holds, 1 naming the
// first that does not.
"use strict";
const { chromium } = require("playwright-core");

const E = JSON.parse(process.env.EXPECT);
const pad = (n, w = 2) => String(n).padStart(w, "0");
// "YYYY-MM-DDTHH:MM:SS" in node's (= the browser's) zone: what a user types into the inputs
function inputValue(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}
function check(what, got, want) {
  if (JSON.stringify(got) !== JSON.stringify(want))
    throw new Error(`${what}: got ${JSON.stringify(got)}, want ${JSON.stringify(want)}`);
  console.log(`ok ${what}: ${JSON.stringify(got)}`);
}
async function loaded(page) {
  await page.waitForSelector('body[data-loaded="1"]', { timeout: 30000 });
}
// The layout as drawn, from the elements' boxes (CSS px, the viewport's): nothing sticks out
// of its panel. The page and every shown panel (a <section>) no wider than their boxes
// (scrollWidth counts content that overflows a box even when it is not clipped), and in the
// trace panel every timeline track and its bar inside the panel's box, the bar inside its
// track, and each span name's first letter inside its cell. `bars` (optional, the rows' [left, right] as fractions of the trace's span): each
// bar's edges where those put them on its track, within 1 px. A box edge may sit half a pixel
// out (layout rounds to 1/64 px, scrollWidth to whole px). Throws naming the first problems.
async function checkLayout(page, what, bars) {
  const bad = await page.evaluate((bars) => {
    const out = [];
    const edges = (b) => `[${b.left.toFixed(1)}, ${b.right.toFixed(1)}]`;
    const de = document.documentElement;
    if (de.scrollWidth > de.clientWidth)
      out.push(`page scrollWidth ${de.scrollWidth} > clientWidth ${de.clientWidth}`);
    for (const s of document.querySelectorAll("main > section:not([hidden])"))
      if (s.scrollWidth > s.clientWidth)
        out.push(`panel "${s.querySelector("h2").firstChild.textContent.trim()}": scrollWidth ` +
                 `${s.scrollWidth} > clientWidth ${s.clientWidth}`);
    const p = document.getElementById("trace-section").getBoundingClientRect();
    const inside = (b, o) => b.left >= o.left - 0.5 && b.right <= o.right + 0.5 &&
                             b.top >= o.top - 0.5 && b.bottom <= o.bottom + 0.5;
    // each span's name starts inside its cell, however deep the span (its indent is cut)
    document.querySelectorAll("#trace-view tbody td:first-child").forEach((td, i) => {
      const c = td.getBoundingClientRect(), r = document.createRange();
      const text = document.createTreeWalker(td, NodeFilter.SHOW_TEXT).nextNode();
      if (!text || !text.length) return out.push(`row ${i}: no span name`);
      r.setStart(text, 0);
      r.setEnd(text, 1);
      const g = r.getBoundingClientRect();
      if (g.left < c.left - 0.5 || g.right > c.right + 0.5)
        out.push(`row ${i}: its name's first letter ${edges(g)} outside its cell ${edges(c)}`);
    });
    const tracks = document.querySelectorAll("#trace-view tbody .timeline");
    if (bars && tracks.length !== bars.length) out.push(`${tracks.length} timelines, want ${bars.length}`);
    tracks.forEach((t, i) => {
      const tb = t.getBoundingClientRect(), bb = t.firstElementChild.getBoundingClientRect();
      if (!inside(tb, p)) out.push(`row ${i}: track ${edges(tb)} outside the trace panel ${edges(p)}`);
      if (!inside(bb, p)) out.push(`row ${i}: bar ${edges(bb)} outside the trace panel ${edges(p)}`);
      if (!inside(bb, tb)) out.push(`row ${i}: bar ${edges(bb)} outside its track ${edges(tb)}`);
      if (bars && bars[i]) {
        const want = { left: tb.left + bars[i][0] * tb.width, right: tb.left + bars[i][1] * tb.width };
        if (Math.abs(bb.left - want.left) > 1 || Math.abs(bb.right - want.right) > 1)
          out.push(`row ${i}: bar ${edges(bb)}, want ${edges(want)} on track ${edges(tb)}`);
      }
    });
    return out;
  }, bars || null);
  if (bad.length)
    throw new Error(`layout (${what}): ${bad.length} problems: ${bad.slice(0, 6).join("; ")}`);
  console.log(`ok layout (${what})`);
}

(async () => {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    timeout: 60000,
  });
  let rc = 0;
  try {
    const ctx = await browser.newContext({ timezoneId: process.env.TZ, viewport: { width: 1400, height: 1000 } });
    const page = await ctx.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(process.env.PAGE_URL);
    await loaded(page);
    // the services list comes from /api/services
    await page.waitForSelector(`#service option[value="${E.service}"]`, { state: "attached" });
    // a window and a filter, as a user sets them
    await page.selectOption("#range", "custom");
    await page.fill("#from", inputValue(E.start_ms));
    await page.fill("#to", inputValue(E.end_ms));
    await page.selectOption("#service", E.service);
    await page.click("#apply");
    await loaded(page);
    check("status line", await page.textContent("#status"), "");
    check("requests", await page.textContent("#total"), String(E.total));
    check("errors", await page.textContent("#errors"), String(E.errors));
    check("error rate", await page.textContent("#error-rate"), E.error_rate);
    // the window in the browser's zone and in UTC
    const win = await page.textContent("#window");
    for (const s of E.window_texts)
      if (!win.includes(s)) throw new Error(`window text ${JSON.stringify(win)} lacks ${s}`);
    console.log(`ok window: ${win}`);
    const endpoints = await page.$$eval("#endpoints tbody tr", (rows) => rows.map((r) =>
      [r.cells[0].textContent, Number(r.cells[1].textContent), Number(r.cells[2].textContent)]));
    check("top endpoints by count", endpoints, E.endpoints_by_count);
    await page.click('a[data-sort="errors"]');
    const byErr = await page.$$eval("#endpoints tbody tr", (rows) => rows.map((r) => r.cells[0].textContent));
    check("top endpoints by errors", byErr, E.endpoints_by_errors);
    // the charts: one polyline per series, as many points as buckets
    const pts = await page.$$eval("#rate-chart polyline", (ls) => ls.map((l) => l.getAttribute("points").split(" ").length));
    check("rate chart series and points", pts.length, 2);
    // no line runs through the legend band at the top (the names and the scale's maximum)
    for (const id of ["rate-chart", "latency-chart"]) {
      const top = await page.$$eval(`#${id} polyline`, (ls) => Math.min(...ls.flatMap((l) =>
        l.getAttribute("points").split(" ").map((p) => Number(p.split(",")[1])))));
      const band = await page.evaluate(() => LEGEND_PX);
      if (!(top >= band)) throw new Error(`${id}: a line reaches y=${top}, inside the legend band (0-${band})`);
      console.log(`ok ${id}: lines below the legend band (top y=${top})`);
    }
    // the exchanges: newest first, paged by 20
    const rows = await page.$$eval("#exchanges tbody tr", (rs) => rs.map((r) =>
      [r.cells[0].textContent, r.cells[3].textContent, r.cells[4].textContent]));
    check("exchanges on page 1", rows.length, Math.min(E.total, 20));
    check("newest exchange", rows[0], [E.newest_local + E.newest_utc, E.newest_path, String(E.newest_status)]);
    // the trace view: the span tree with the captured exchange under the span that called it
    await page.click(`a[data-trace="${E.trace_id}"]`);
    await page.waitForSelector("#trace-section:not([hidden]) #trace-view tbody tr");
    const tree = await page.$$eval("#trace-view tbody tr", (rs) => rs.map((r) =>
      [Number(r.dataset.depth), r.cells[0].textContent, r.cells[1].textContent]));
    check("trace tree", tree, E.trace_tree);
    await checkLayout(page, "trace " + E.trace_id, E.trace_bars);
    // odd trees: a parent cycle and a deep chain, every span shown once, no page error
    const open = async (id) => {
      await page.evaluate((i) => openTrace(i), id);
      await page.waitForFunction((i) => document.getElementById("trace-id").textContent.startsWith(i), id);
      return page.$$eval("#trace-view tbody tr", (rs) => rs.map((r) => [Number(r.dataset.depth), r.cells[0].textContent]));
    };
    check("cycle tree", await open(E.cycle.id), E.cycle.tree);
    await checkLayout(page, "trace " + E.cycle.id);
    const chain = await open(E.chain.id);
    await checkLayout(page, "trace " + E.chain.id);
    check("chain rows", chain.length, E.chain.n);
    check("chain first", chain[0], E.chain.first);
    check("chain last", chain[chain.length - 1], E.chain.last);
    check("chain depths", chain.every(([d], i) => d === i), true);
    // back to the first trace for the screenshot
    check("trace tree again", await open(E.trace_id), E.trace_tree.map(([d, n]) => [d, n]));
    await checkLayout(page, "trace " + E.trace_id + " again", E.trace_bars);
    await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
    console.log(`screenshot: ${process.env.SCREENSHOT}`);
    check("page errors", errors, []);
  } catch (e) {
    console.error(`FAIL ${e.message}`);
    rc = 1;
  } finally {
    await browser.close();
  }
  process.exit(rc);
})();
