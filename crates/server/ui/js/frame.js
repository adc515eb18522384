// What every page shares with the frame: the banner that says what went wrong in one
// sentence, actions whose failure goes there, and navigation without a reload (the frame
// draws the page on `popstate`).

// Shows `sentence` in the banner (none: hides it).
export function report(sentence) {
  const el = document.getElementById('error');
  el.hidden = !sentence;
  el.textContent = sentence || '';
}

// Runs an action (a button's): its error goes to the banner; the page follows the change by
// itself.
export async function act(what, fn) {
  try {
    report(null);
    return await fn();
  } catch (e) {
    report(`${what} failed: ${e.explained || e.message}`);
    return undefined;
  }
}

export function navigate(href) {
  history.pushState(null, '', href);
  window.dispatchEvent(new PopStateEvent('popstate'));
}
