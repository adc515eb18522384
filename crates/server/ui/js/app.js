// The UI's frame: which page an address names, the live loop that draws it again whenever the
// cluster's state changes (one blocking query for every page), navigation without reloads, and
// the banner that shows what went wrong in one sentence.

import { changedAfter, token } from './api.js';
import { h, put } from './html.js';
import { report, navigate } from './frame.js';
import { forgetRights } from './rights.js';
import jobs from './jobs.js';
import job from './job.js';
import run from './run.js';
import tokenPage from './token.js';
import deployment from './deployment.js';
import allocation from './allocation.js';
import clients from './clients.js';
import client from './client.js';
import servers from './servers.js';

// Address patterns under /ui/ and their pages; parameters are the captured parts.
const routes = [
  [/^\/ui\/?$/, jobs],
  [/^\/ui\/jobs\/?$/, jobs],
  [/^\/ui\/jobs\/([^/]+)\/?$/, job],
  [/^\/ui\/deployments\/([^/]+)\/?$/, deployment],
  [/^\/ui\/allocations\/([^/]+)\/?$/, allocation],
  [/^\/ui\/clients\/?$/, clients],
  [/^\/ui\/clients\/([^/]+)\/?$/, client],
  [/^\/ui\/servers\/?$/, servers],
  [/^\/ui\/run\/?$/, run],
  [/^\/ui\/settings\/tokens\/?$/, tokenPage],
];

// Errors the page meets are shown, and kept for the browser tests (which fail on any).
window.yurtErrors = [];
function failed(sentence) {
  window.yurtErrors.push(sentence);
  report(`The page failed: ${sentence}`);
}
window.addEventListener('error', (e) => failed(e.message));
window.addEventListener('unhandledrejection', (e) => failed(String(e.reason?.message || e.reason)));
document.addEventListener('securitypolicyviolation', (e) =>
  failed(`the content policy refused ${e.blockedURI || 'an inline part'} (${e.violatedDirective})`));

const main = () => document.getElementById('page');
let current = null;

function match(path) {
  for (const [re, page] of routes) {
    const m = re.exec(path);
    if (m) return { page, params: m.slice(1).map(decodeURIComponent) };
  }
  return null;
}

function markNav(path) {
  for (const a of document.querySelectorAll('nav a')) {
    const on = path.startsWith(a.getAttribute('href')) ||
      (a.dataset.home !== undefined && /^\/ui\/?$/.test(path));
    a.classList.toggle('active', on);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  document.getElementById('who').textContent = token() ? 'ACL token set' : 'Sign in';
}

async function show() {
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const { signal } = controller;
  report(null);
  forgetRights();
  const path = location.pathname;
  markNav(path);
  const found = match(path);
  const root = main();
  if (!found) {
    document.title = 'Not found · Yurt';
    put(root, h`<h1>Not found</h1><p>The UI has no page at ${path}.</p>`);
    return;
  }
  const { page, params } = found;
  document.title = `${page.title(params)} · Yurt`;
  const ctx = { params, signal, live: null, data: null, redraw: () => {} };
  root.replaceChildren();
  page.mount(root, ctx);
  ctx.redraw = () => {
    if (ctx.data !== null && ctx.live) put(ctx.live, page.render(ctx.data, ctx));
  };
  if (!page.load) return;
  let index = 0;
  while (!signal.aborted) {
    try {
      ctx.data = await page.load(ctx);
      if (signal.aborted) return;
      ctx.redraw();
    } catch (e) {
      if (signal.aborted) return;
      report(e.explained || e.message);
    }
    try {
      index = await changedAfter(index, signal, page.poll);
    } catch (e) {
      if (signal.aborted) return;
      report(`The agent does not answer: ${e.message}`);
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

// Links within the UI change the page without a reload.
document.addEventListener('click', (ev) => {
  const a = ev.target.closest('a');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
  const href = a.getAttribute('href');
  if (!href || !href.startsWith('/ui/') || a.target) return;
  ev.preventDefault();
  navigate(href);
});

window.addEventListener('popstate', show);
show();
