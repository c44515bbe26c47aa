// Drives Debian's headless Chromium through a running sealform server, the way a person would,
// and prints one JSON report on stdout for tests/it/browser.rs to check.
//
//   node tests/browser/run.mjs <base-url> <form-id> <screenshot-dir>
//
// Scenarios: JavaScript on (English, axe-core on every page), JavaScript off (switching to
// Spanish with the page's own language links), JavaScript on with `Accept-Language: es` (axe-core
// on the Spanish pages). Each first sends the form with the first required field empty (the
// error path), then fills it and sends again. It fills whatever visible fields the form has.
//
// SEALFORM_SUBMIT_DELAY_MS (default 3500) is waited before each submit, so a "too fast to be a
// person" check on the server does not refuse the browser.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { chromium } from 'playwright-core';

const [base, formId, shotDir] = process.argv.slice(2);
if (!base || !formId || !shotDir) {
  console.error('usage: node run.mjs <base-url> <form-id> <screenshot-dir>');
  process.exit(2);
}
const origin = new URL(base).origin;
const delay = Number(process.env.SEALFORM_SUBMIT_DELAY_MS ?? 3500);
const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const ZOOM200 = { width: 640, height: 450 };
const REFLOW = { width: 320, height: 640 };

// What the person types. The textarea gets two lines and non-ASCII text; the browser sends its
// newline as CRLF (HTML's form encoding), and the record keeps exactly what was sent.
const TYPED = {
  textarea: 'Our town has no SWAT team.\nWe need training — ¿pueden ayudar? Ñandú 🚓',
  text: 'Sgt. Ana Núñez <ana> & "co"',
  email: 'ana.nunez@example.org',
};

const browser = await chromium.launch({
  executablePath: process.env.SEALFORM_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

const report = { scenarios: [], requests: [], weights: {}, screenshots: shotDir };

async function axe(page) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return r.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
}

/** The form's fields a person can see and reach, in document order. */
async function fields(page) {
  const loc = page.locator('form[method=post] :is(input, textarea, select)');
  const out = [];
  for (const el of await loc.all()) {
    const info = await el.evaluate((e) => ({
      tag: e.tagName.toLowerCase(), type: e.type, name: e.name, id: e.id, required: e.required,
      hiddenByAuthor: e.type === 'hidden' || e.tabIndex < 0 || !!e.closest('[aria-hidden=true],[hidden]'),
    })).catch(() => null);
    if (!info || info.hiddenByAuthor || !(await el.isVisible())) continue;
    out.push({ el, ...info });
  }
  return out;
}

/** Fills every field; `skip` names fields left empty. Returns what was typed, by name. */
async function fill(page, skip = new Set()) {
  const typed = {};
  for (const f of await fields(page)) {
    if (skip.has(f.name)) {
      if (f.type === 'checkbox') await f.el.setChecked(false);
      else if (f.tag !== 'select') await f.el.fill('');
      continue;
    }
    if (f.tag === 'textarea') { await f.el.fill(TYPED.textarea); typed[f.name] = TYPED.textarea; }
    else if (f.tag === 'select') {
      const values = await f.el.evaluate((s) => [...s.options].map((o) => o.value).filter((v) => v));
      const v = values[values.length - 1];
      await f.el.selectOption(v); typed[f.name] = v;
    } else if (f.type === 'checkbox') { await f.el.setChecked(true); typed[f.name] = true; }
    else if (f.type === 'email') { await f.el.fill(TYPED.email); typed[f.name] = TYPED.email; }
    else { await f.el.fill(TYPED.text); typed[f.name] = TYPED.text; }
  }
  return typed;
}

/** Submits like a person (after `delay`): with the keyboard or a click. Returns the response. */
async function submit(page, how) {
  await page.waitForTimeout(delay);
  const button = page.locator('form[method=post] button[type=submit]');
  const nav = page.waitForNavigation({ waitUntil: 'load' });
  if (how === 'keyboard') { await button.focus(); await page.keyboard.press('Enter'); } else await button.click();
  return await nav;
}

/** The focused element's id, once it is `want` (autofocus runs at the next rendering step
 *  after load, so poll briefly) or after 3 s. */
async function focusedId(page, want) {
  let id = null;
  for (let i = 0; i < 30; i++) {
    id = await page.evaluate(() => document.activeElement?.id).catch(() => null);
    if (id === want) break;
    await page.waitForTimeout(100);
  }
  return id;
}

/** Screenshots at desktop, phone and 200 % zoom (a 1280 px window at 200 % lays out 640 CSS
 *  px); at each width, and at 320 px (WCAG reflow), records whether the page scrolls sideways. */
async function shoot(page, name, out) {
  const sizes = [['desktop', DESKTOP], ['phone', PHONE], ['zoom200', ZOOM200], ['reflow320', REFLOW]];
  for (const [label, size] of sizes) {
    await page.setViewportSize(size);
    const sideways = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth);
    if (sideways) out.sideways.push(`${name}@${label}`);
    if (label !== 'reflow320') {
      await page.screenshot({ path: path.join(shotDir, `${name}-${label}.png`), fullPage: true });
    }
  }
  await page.setViewportSize(DESKTOP);
}

async function scenario({ name, js, acceptLanguage, switchTo, how, screenshots }) {
  const context = await browser.newContext({
    javaScriptEnabled: js, viewport: DESKTOP, extraHTTPHeaders: { 'Accept-Language': acceptLanguage },
  });
  const page = await context.newPage();
  const docs = [];
  context.on('request', (r) => report.requests.push(r.url()));
  page.on('response', (r) => {
    if (r.request().resourceType() === 'document' || r.request().resourceType() === 'stylesheet') {
      docs.push(r.body().then((b) => ({ url: r.url(), method: r.request().method(), status: r.status(), bytes: b.length, type: r.request().resourceType() })).catch(() => null));
    }
  });
  const out = { name, js, axe: {}, sideways: [] };

  let res = await page.goto(`${base}/forms/${formId}`);
  out.formStatus = res.status();
  if (switchTo) {
    const nav = page.waitForNavigation();
    await page.locator(`nav a[hreflang=${switchTo}]`).click();
    await nav;
    out.switchedUrl = new URL(page.url()).search;
  }
  out.lang = await page.locator('html').getAttribute('lang');
  out.submitLabel = (await page.locator('form[method=post] button[type=submit]').innerText()).trim();
  if (js) out.axe.form = await axe(page);
  if (screenshots) await shoot(page, `form-${out.lang}`, out);

  // Keyboard-only: Tab from the top reaches every field, then the submit button.
  if (js) {
    const order = [];
    await page.locator('body').focus();
    for (let i = 0; i < 40; i++) {
      await page.keyboard.press('Tab');
      const id = await page.evaluate(() => document.activeElement?.id || document.activeElement?.tagName);
      order.push(id);
      if (id === 'BUTTON') break;
    }
    out.tabOrder = order;
  }

  // The error path: the first required field empty, everything else filled.
  const all = await fields(page);
  const firstRequired = all.find((f) => f.required);
  out.emptied = firstRequired.name;
  const kept = await fill(page, new Set([firstRequired.name]));
  res = await submit(page, 'click');
  out.error = {
    status: res.status(),
    lang: await page.locator('html').getAttribute('lang'),
    summaryLinks: await page.locator('.error-summary a').evaluateAll((as) => as.map((a) => a.getAttribute('href'))),
    fieldError: (await page.locator(`#${firstRequired.id}-error`).innerText()).trim(),
    describedBy: await page.locator(`#${firstRequired.id}`).getAttribute('aria-describedby'),
    autofocus: await page.locator('[autofocus]').evaluateAll((es) => es.map((e) => e.id)),
    focused: await focusedId(page, firstRequired.id),
    kept: {},
  };
  for (const f of await fields(page)) {
    if (!(f.name in kept)) continue;
    out.error.kept[f.name] = f.type === 'checkbox' ? await f.el.isChecked() : await f.el.inputValue();
  }
  out.error.typedBefore = kept;
  if (js) out.axe.error = await axe(page);
  if (screenshots) await shoot(page, `error-${out.lang}`, out);

  // Fix it and send.
  out.typed = await fill(page);
  res = await submit(page, how);
  out.sentStatus = res.status();
  out.receipt = (await page.locator('#receipt').innerText()).trim();
  out.sentLang = await page.locator('html').getAttribute('lang');
  out.sentTitle = (await page.locator('h1').innerText()).trim();
  if (js) out.axe.confirmation = await axe(page);
  if (screenshots) {
    await shoot(page, `confirmation-${out.lang}`, out);
    // Printed, the receipt stays and the language links and buttons go.
    await page.emulateMedia({ media: 'print' });
    out.print = {
      receiptVisible: await page.locator('#receipt').isVisible(),
      switcherVisible: await page.locator('nav.langs').isVisible(),
    };
    await page.screenshot({ path: path.join(shotDir, `confirmation-${out.lang}-print.png`), fullPage: true });
    await page.emulateMedia({ media: 'screen' });
  }

  out.documents = (await Promise.all(docs)).filter(Boolean);
  await context.close();
  report.scenarios.push(out);
}

try {
  await scenario({ name: 'js-on-en', js: true, acceptLanguage: 'en-US,en;q=0.9', how: 'keyboard', screenshots: true });
  await scenario({ name: 'js-off-switch-to-es', js: false, acceptLanguage: 'en-US,en;q=0.9', switchTo: 'es', how: 'click', screenshots: false });
  await scenario({ name: 'js-on-accept-es', js: true, acceptLanguage: 'es-ES,es;q=0.9', how: 'click', screenshots: true });
} finally {
  await browser.close();
}

// Page weights: each HTML page plus the stylesheet, as the browser received them.
const css = report.scenarios.flatMap((s) => s.documents).find((d) => d.type === 'stylesheet');
for (const s of report.scenarios) {
  for (const d of s.documents.filter((d) => d.type === 'document')) {
    const key = `${s.name}: ${d.method} ${new URL(d.url).pathname} ${d.status}`;
    report.weights[key] = { html: d.bytes, css: css ? css.bytes : null };
  }
}
console.log(JSON.stringify(report, null, 1));
