// Building the page without innerHTML: every text goes through textContent, so nothing
// the API returns can become markup (and the Content-Security-Policy forbids inline code).

/**
 * `h('button', {type: 'submit', onclick: fn, class: 'primary'}, 'Save')`: an element with
 * attributes (`on*` become listeners, `false`/`null` are left out) and children
 * (strings become text nodes, arrays are flattened, null is skipped).
 */
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      element.addEventListener(name.slice(2), value);
    } else if (name === 'dataset') {
      Object.assign(element.dataset, value);
    } else if (name in element && typeof value !== 'string') {
      element[name] = value;
    } else {
      element.setAttribute(name, value === true ? '' : String(value));
    }
  }
  append(element, children);
  return element;
}

/** Appends children (strings, nodes, arrays, null) to `parent`. */
export function append(parent, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces the children of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

let fieldCounter = 0;

/**
 * A labelled input with a slot for its error, wired for assistive technology:
 * `{wrapper, input, showError(text or list), clear()}`.
 */
export function field(label, attributes = {}, { hint = null, multiline = false } = {}) {
  const id = attributes.id || `field-${++fieldCounter}`;
  const errorId = `${id}-error`;
  const hintId = hint ? `${id}-hint` : null;
  const input = h(multiline ? 'textarea' : 'input', { ...attributes, id, 'aria-describedby': [hintId, errorId].filter(Boolean).join(' ') });
  const error = h('div', { id: errorId, class: 'field-error', role: 'alert', hidden: true });
  const wrapper = h('div', { class: 'field' },
    h('label', { for: id }, label),
    hint ? h('div', { id: hintId, class: 'field-hint' }, hint) : null,
    input, error);
  return {
    wrapper,
    input,
    showError(messages) {
      const list = [messages].flat().filter(Boolean);
      if (list.length === 0) return this.clear();
      replace(error, list.length === 1 ? list[0] : h('ul', {}, list.map((m) => h('li', {}, m))));
      error.hidden = false;
      input.setAttribute('aria-invalid', 'true');
    },
    clear() {
      error.replaceChildren();
      error.hidden = true;
      input.removeAttribute('aria-invalid');
    },
  };
}

/** A status line for a form (`role=status`), showing errors or notes. */
export function notice() {
  const element = h('div', { class: 'notice', role: 'status', 'aria-live': 'polite', hidden: true });
  return {
    element,
    show(text, kind = 'error') {
      element.className = `notice notice-${kind}`;
      replace(element, text);
      element.hidden = false;
    },
    clear() { element.hidden = true; element.replaceChildren(); },
  };
}

/** A definition list from `[[term, value], ...]`. */
export function facts(rows, attributes = {}) {
  return h('dl', { class: 'facts', ...attributes }, rows.map(([term, value]) => [h('dt', {}, term), h('dd', {}, value ?? '—')]));
}

/** `2026-01-31T09:30:00Z` as local date and time, or a dash. */
export function when(text) {
  if (!text) return '—';
  const date = new Date(text);
  return Number.isNaN(date.getTime()) ? text : date.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

/** Disables a button while `work` runs. */
export async function busy(button, work) {
  button.disabled = true;
  button.setAttribute('aria-busy', 'true');
  try {
    return await work();
  } finally {
    button.disabled = false;
    button.removeAttribute('aria-busy');
  }
}
