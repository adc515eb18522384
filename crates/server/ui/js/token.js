// ACL token sign-in: the secret is kept in this browser only (localStorage, as Nomad's UI does)
// and sent with every call as X-Nomad-Token; the page shows whose token it is and its policies.

import { read, token, setToken } from './api.js';
import { h, put } from './html.js';
import { act } from './frame.js';

async function describe(out) {
  if (!token()) {
    put(out, h`<p class="muted" id="token-state">No token: calls are anonymous.</p>`);
    return;
  }
  const t = await read('/v1/acl/token/self');
  put(out, h`<p id="token-state">Signed in as <strong>${t.Name || t.AccessorID}</strong>
    (${t.Type}${(t.Policies || []).length ? `, policies: ${t.Policies.join(', ')}` : ''}).</p>`);
}

export default {
  title: () => 'ACL token',

  mount(root) {
    root.innerHTML = `<h1>ACL token</h1>
      <p class="muted">The secret ID stays in this browser and goes with every call this UI makes.</p>
      <div class="filters">
        <label>Secret ID <input id="secret" type="password" autocomplete="off" size="40"></label>
        <button id="sign-in">Sign in</button>
        <button id="sign-out" class="secondary">Sign out</button>
      </div>
      <div id="who-am-i"></div>`;
    const out = root.querySelector('#who-am-i');
    const secret = root.querySelector('#secret');
    root.querySelector('#sign-in').addEventListener('click', () => act('Sign in', async () => {
      const before = token();
      setToken(secret.value.trim());
      try {
        await describe(out);
      } catch (e) {
        setToken(before);
        throw e;
      }
      secret.value = '';
      document.getElementById('who').textContent = 'ACL token set';
    }));
    root.querySelector('#sign-out').addEventListener('click', () => act('Sign out', async () => {
      setToken('');
      document.getElementById('who').textContent = 'Sign in';
      await describe(out);
    }));
    act('Reading the token', () => describe(out));
  },
};
