/**
 * Model output is untrusted data: this sanitizer keeps what Markdown renders to (paragraphs,
 * lists, tables, code with its highlighting classes, http(s) links) and nothing that runs or
 * fetches. It is given to the sidebar's rendermime (`rendermime.clone({ sanitizer })`), which
 * calls it on the HTML that marked made from the answer BEFORE that HTML touches the page.
 *
 * - parsed with DOMParser: an inert document (no script runs, no image loads while we look);
 * - elements not on the list are dropped, with their content for script/style/svg/media and
 *   kept as text otherwise;
 * - <img> becomes text: "[image: alt] url" (never a request);
 * - attributes: a short list per tag; `class` only with highlighting-like values (a class such
 *   as `lm-mod-hidden` could hide text); never `on*`, `style`, `src`, `data-commandlinker-*`;
 * - <a href>: http(s) only (else the link becomes its text), opened in a new tab, noopener.
 */

/** JupyterLab's ISanitizer, structurally (no runtime import: jest runs this under jsdom). */
export interface ISanitizerLike {
  sanitize(dirty: string, options?: unknown): string;
  getAutolink?(): boolean;
  allowNamedProperties?: boolean;
}

const KEEP = new Set([
  'p', 'br', 'hr', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'em', 'strong', 'b', 'i', 'u', 's', 'del',
  'ins', 'mark', 'code', 'pre', 'span', 'div', 'blockquote', 'ul', 'ol', 'li', 'table', 'thead',
  'tbody', 'tfoot', 'tr', 'th', 'td', 'caption', 'a', 'sup', 'sub', 'kbd', 'samp', 'var', 'dl',
  'dt', 'dd', 'abbr', 'small', 'q', 'cite'
]);

/** dropped with everything inside */
const DROP = new Set([
  'script', 'style', 'template', 'svg', 'math', 'iframe', 'frame', 'frameset', 'object', 'embed',
  'applet', 'video', 'audio', 'source', 'track', 'picture', 'canvas', 'link', 'meta', 'base',
  'form', 'input', 'button', 'select', 'textarea', 'noscript', 'head', 'title', 'portal', 'map'
]);

const ATTRS: Record<string, string[]> = {
  a: ['href', 'title'],
  td: ['align', 'colspan', 'rowspan'],
  th: ['align', 'colspan', 'rowspan', 'scope'],
  ol: ['start'],
  abbr: ['title'],
  code: [],
  pre: []
};

/** Highlighting / Markdown classes: CodeMirror's (cm-*, ͼ*, tok-*), marked's language-*. */
const SAFE_CLASS = /^(cm-[\w-]+|ͼ[\w-]+|tok-[\w-]+|language-[\w+#.-]+|hljs[\w-]*)$/;

/** An http(s) URL, or null. */
export function safeHref(href: string | null): string | null {
  if (!href) {
    return null;
  }
  // no control characters or whitespace tricks ("java\tscript:")
  const h = href.trim();
  if (/[\u0000-\u001f\u007f\s]/.test(h)) {
    return null;
  }
  return /^https?:\/\//i.test(h) ? h : null;
}

function cleanAttributes(el: Element, tag: string): void {
  const allowed = ATTRS[tag] || [];
  for (const attr of Array.from(el.attributes)) {
    const name = attr.name.toLowerCase();
    if (name === 'class') {
      const keep = attr.value.split(/\s+/).filter(c => SAFE_CLASS.test(c));
      if (keep.length) {
        el.setAttribute('class', keep.join(' '));
      } else {
        el.removeAttribute('class');
      }
      continue;
    }
    if (!allowed.includes(name)) {
      el.removeAttribute(attr.name);
    }
  }
}

function walk(doc: Document, parent: Element): void {
  for (const node of Array.from(parent.childNodes)) {
    if (node.nodeType === 3) {
      continue; // text
    }
    if (node.nodeType !== 1) {
      node.remove(); // comments, processing instructions
      continue;
    }
    const el = node as Element;
    const tag = el.localName.toLowerCase();
    if (tag === 'img' || tag === 'image') {
      const alt = (el.getAttribute('alt') || '').trim();
      const src = el.getAttribute('src') || el.getAttribute('href') || '';
      const span = doc.createElement('span');
      span.setAttribute('class', 'jp-MiniCPM-imageText');
      span.textContent = `[image${alt ? `: ${alt}` : ''}]${src ? ` ${src}` : ''}`;
      el.replaceWith(span);
      continue;
    }
    if (DROP.has(tag)) {
      el.remove();
      continue;
    }
    if (!KEEP.has(tag)) {
      // unknown element: keep its (cleaned) content as plain flow
      walk(doc, el);
      el.replaceWith(...Array.from(el.childNodes));
      continue;
    }
    const href = tag === 'a' ? safeHref(el.getAttribute('href')) : null;
    cleanAttributes(el, tag);
    if (tag === 'a') {
      if (!href) {
        walk(doc, el);
        el.replaceWith(...Array.from(el.childNodes));
        continue;
      }
      el.setAttribute('href', href);
      el.setAttribute('target', '_blank');
      el.setAttribute('rel', 'noopener noreferrer nofollow');
    }
    walk(doc, el);
  }
}

/** The sanitizer; `inner` (JupyterLab's) runs first when given, ours decides. */
export class SafeSanitizer implements ISanitizerLike {
  constructor(private inner?: ISanitizerLike) {}

  sanitize(dirty: string, options?: unknown): string {
    const first = this.inner ? this.inner.sanitize(dirty, options) : dirty;
    return sanitizeHtml(first);
  }

  getAutolink(): boolean {
    return true;
  }

  readonly allowNamedProperties = false;
}

export function sanitizeHtml(html: string): string {
  const doc = new DOMParser().parseFromString(`<!doctype html><body>${html}`, 'text/html');
  walk(doc, doc.body);
  return doc.body.innerHTML;
}

/**
 * Defence in depth after rendering (the renderer adds its own nodes: header anchors, math):
 * the same rules on a live element. Nothing here should ever fire; a test checks the DOM.
 */
export function scrubRendered(host: HTMLElement): void {
  host.querySelectorAll('img, image, svg image, script, iframe, object, embed').forEach(n => n.remove());
  host.querySelectorAll('*').forEach(n => {
    for (const a of Array.from(n.attributes)) {
      if (/^on/i.test(a.name) || /^data-commandlinker/i.test(a.name)) {
        n.removeAttribute(a.name);
      }
    }
  });
  host.querySelectorAll('a').forEach(a => {
    if ((a.getAttribute('href') || '').startsWith('#')) {
      a.remove(); // the renderer's own header anchors ("¶"): no use in a chat
    } else if (!safeHref(a.getAttribute('href'))) {
      a.replaceWith(...Array.from(a.childNodes));
    }
  });
}
