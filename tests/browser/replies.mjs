// A tipster's side of anonymous replies in Debian's headless Chromium with JavaScript OFF, one
// step per run, each printing one JSON object on stdout for tests/it/replies/browser.rs:
//
//   node tests/browser/replies.mjs submit    <base-url> <lang> <form-id> <message>
//   node tests/browser/replies.mjs read      <base-url> <lang> <code>
//   node tests/browser/replies.mjs follow-up <base-url> <lang> <code> <message>
//   node tests/browser/replies.mjs delete    <base-url> <lang> <code>
//
// Every page is opened, typed into and sent the way a person would (links and buttons only; the
// language is the page's own switcher parameter). SEALFORM_SUBMIT_DELAY_MS (default 3500) is
// waited before each submit, past the server's "too fast to be a person" check.
import { chromium } from 'playwright-core';

const [step, base, lang, ...args] = process.argv.slice(2);
if (!step || !base || !lang) {
  console.error('usage: node replies.mjs <step> <base-url> <lang> ...');
  process.exit(2);
}
const delay = Number(process.env.SEALFORM_SUBMIT_DELAY_MS ?? 3500);

const browser = await chromium.launch({
  executablePath: process.env.SEALFORM_CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const context = await browser.newContext({ javaScriptEnabled: false });
const page = await context.newPage();
const requests = [];
context.on('request', (r) => requests.push(r.url()));

/** Clicks `selector` after the delay; the response of the page it loads. */
async function send(selector) {
  await page.waitForTimeout(delay);
  const nav = page.waitForNavigation({ waitUntil: 'load' });
  await page.locator(selector).click();
  return await nav;
}

/** The text of `selector`, or null when the page has none. */
async function text(selector) {
  const loc = page.locator(selector);
  return (await loc.count()) ? (await loc.first().innerText()).trim() : null;
}

/** Opens /replies, types `code` and sends it: what the page shows. */
async function read(code) {
  await page.goto(`${base}/replies?lang=${lang}`);
  await page.locator('#f-code').fill(code);
  const res = await send('form[action^="/replies?"] button[type=submit]');
  const answers = [];
  for (const a of await page.locator('article.answer').all()) {
    answers.push({
      heading: (await a.locator('h2').innerText()).trim(),
      status: (await a.locator('.answer-status').count()) ? (await a.locator('.answer-status').innerText()).trim() : null,
      text: (await a.locator('.answer-text').innerText()).trim(),
    });
  }
  return {
    status: res.status(),
    lang: await page.locator('html').getAttribute('lang'),
    title: await text('h1'),
    notice: await text('.notice'),
    statusLine: await text('#status'),
    answers,
    url: page.url(),
  };
}

const out = { step };
if (step === 'submit') {
  const [formId, message] = args;
  await page.goto(`${base}/forms/${formId}?lang=${lang}`);
  await page.locator('#f-message').fill(message);
  const res = await send('form[method=post] button[type=submit]');
  out.status = res.status();
  out.lang = await page.locator('html').getAttribute('lang');
  out.receipt = await text('#receipt');
  out.code = await text('#reply-code');
  out.url = page.url();
} else if (step === 'read') {
  Object.assign(out, await read(args[0]));
} else if (step === 'follow-up') {
  const [code, message] = args;
  out.read = await read(code);
  await page.locator('#f-message').fill(message);
  const res = await send('form[action^="/replies/follow-up"] button[type=submit]');
  out.status = res.status();
  out.title = await text('h1');
  out.receipt = await text('#receipt');
  out.url = page.url();
} else if (step === 'delete') {
  out.read = await read(args[0]);
  let res = await send('form[action^="/replies/delete"] button[type=submit]');
  out.confirmStatus = res.status();
  out.confirmTitle = await text('h1');
  res = await send('form[action^="/replies/delete"] button[type=submit]');
  out.status = res.status();
  out.title = await text('h1');
  out.deleted = await text('#deleted');
  out.url = page.url();
} else {
  console.error(`unknown step ${step}`);
  process.exit(2);
}
out.requests = requests;
await context.close();
await browser.close();
console.log(JSON.stringify(out));
