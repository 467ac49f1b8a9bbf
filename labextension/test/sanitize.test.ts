/**
 * @jest-environment jsdom
 */
import { SafeSanitizer, safeHref, sanitizeHtml, scrubRendered } from '../src/sidebar/sanitize';

const LEAK = 'http://127.0.0.1:9/leak';

/** Parse without loading anything, for assertions. */
function dom(html: string): HTMLElement {
  const d = document.implementation.createHTMLDocument('t');
  d.body.innerHTML = html;
  return d.body;
}

describe('sanitizeHtml', () => {
  it('turns images into text, with alt and URL, and never keeps a src', () => {
    const out = dom(sanitizeHtml(`<p>see <img src="${LEAK}?a" alt="chart" onerror="window.x=1"></p>`));
    expect(out.querySelector('img')).toBeNull();
    expect(out.textContent).toContain(`[image: chart] ${LEAK}?a`);
    expect(out.innerHTML).not.toMatch(/onerror|src=/);
  });
  it('drops scripts, SVG (with <image href>), iframes, styles and forms with their content', () => {
    const out = dom(
      sanitizeHtml(
        `<script>window.x=2</script><svg><image href="${LEAK}?svg" onload="window.x=3"/></svg>` +
          `<iframe src="${LEAK}"></iframe><style>body{background:url(${LEAK})}</style><form><button>b</button></form>ok`
      )
    );
    expect(out.innerHTML).toBe('ok');
  });
  it('keeps http(s) links, opened in a new tab without referrer; drops javascript: and data: links', () => {
    const out = dom(
      sanitizeHtml(
        '<a href="https://example.org/x">safe</a> <a href="javascript:window.x=4">js</a> ' +
          '<a href=" JaVaScRiPt:alert(1)">js2</a> <a href="java\tscript:alert(1)">js3</a> <a href="data:text/html,hi">data</a>'
      )
    );
    const links = out.querySelectorAll('a');
    expect(links.length).toBe(1);
    expect(links[0].getAttribute('href')).toBe('https://example.org/x');
    expect(links[0].getAttribute('rel')).toContain('noopener');
    expect(links[0].getAttribute('target')).toBe('_blank');
    expect(out.textContent).toContain('js2'); // the text stays, the link goes
  });
  it('strips command-linker and event attributes, styles and hiding classes', () => {
    const out = dom(
      sanitizeHtml(
        '<span data-commandlinker-command="notebook:run-all-cells" data-commandlinker-args="{}" ' +
          'class="lm-mod-hidden cm-keyword" style="display:none" onclick="x()" hidden>t</span>'
      )
    );
    const span = out.querySelector('span')!;
    expect(span.getAttributeNames()).toEqual(['class']);
    expect(span.className).toBe('cm-keyword');
  });
  it('keeps what Markdown makes: tables, lists, highlighted code', () => {
    const html =
      '<table><thead><tr><th align="left">a</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>' +
      '<ul><li><strong>b</strong></li></ul>' +
      '<pre><code class="language-python"><span class="cm-keyword">def</span> f(): pass</code></pre>';
    const out = dom(sanitizeHtml(html));
    expect(out.querySelector('th')!.getAttribute('align')).toBe('left');
    expect(out.querySelector('td')!.textContent).toBe('1');
    expect(out.querySelector('li strong')!.textContent).toBe('b');
    expect(out.querySelector('pre code.language-python span.cm-keyword')!.textContent).toBe('def');
  });
  it('keeps the text of unknown elements, without them', () => {
    expect(sanitizeHtml('<marquee onstart="x()">hi <b>there</b></marquee>')).toBe('hi <b>there</b>');
  });
});

describe('SafeSanitizer', () => {
  it('runs the inner sanitizer first, then ours', () => {
    const inner = { sanitize: (s: string) => s.replace('A', 'B') };
    expect(new SafeSanitizer(inner).sanitize(`A<img src="${LEAK}">`)).toBe(`B<span class="jp-MiniCPM-imageText">[image] ${LEAK}</span>`);
  });
});

describe('safeHref', () => {
  it('accepts only http(s)', () => {
    expect(safeHref('http://a.b/')).toBe('http://a.b/');
    expect(safeHref('HTTPS://a.b/')).toBe('HTTPS://a.b/');
    for (const bad of ['javascript:x', 'vbscript:x', 'data:,x', 'file:///etc/passwd', '//evil.org', '#top', '', null]) {
      expect(safeHref(bad)).toBeNull();
    }
  });
});

describe('scrubRendered', () => {
  it('removes what a renderer may add after sanitizing', () => {
    const host = dom(
      '<h1>T<a class="jp-InternalAnchorLink" href="#T">¶</a></h1><img alt="x"><a href="javascript:1">j</a>' +
        '<b data-commandlinker-command="x" onmouseover="y()">b</b>'
    );
    scrubRendered(host);
    expect(host.innerHTML).toBe('<h1>T</h1>j<b>b</b>');
  });
});
