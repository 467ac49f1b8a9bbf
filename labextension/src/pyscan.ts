/**
 * A small Python scanner (not a parser) for the sidebar: which names a code cell reads and
 * which it defines. It skips strings, comments, IPython-only lines and non-Python cell magics.
 * Pure functions, no JupyterLab imports; def-use over a notebook builds on it (variables.ts).
 */

const KEYWORDS = new Set(
  (
    'False None True and as assert async await break class continue def del elif else except ' +
    'finally for from global if import in is lambda nonlocal not or pass raise return try ' +
    'while with yield'
  ).split(' ')
);

// Cell magics whose body is Python; any other %%magic cell (%%bash, %%html…) is not code.
const PYTHON_CELL_MAGICS = new Set(['time', 'timeit', 'capture', 'prun', 'debug']);

export interface IToken {
  kind: 'name' | 'op' | 'newline';
  text: string;
  /** bracket depth before this token */
  depth: number;
}

/** Code without strings, comments and IPython-only lines, as tokens. */
export function tokenize(code: string): IToken[] {
  const lines = code.split('\n');
  const first = lines[0]?.trim() ?? '';
  if (first.startsWith('%%')) {
    const magic = first.slice(2).split(/\s/)[0];
    if (!PYTHON_CELL_MAGICS.has(magic)) {
      return [];
    }
    lines.shift();
  }
  const src = lines
    .map(l => (/^\s*[%!]/.test(l) ? '' : l)) // line magics and shell escapes
    .join('\n');
  const tokens: IToken[] = [];
  let depth = 0;
  let i = 0;
  while (i < src.length) {
    const c = src[i];
    if (c === '#') {
      while (i < src.length && src[i] !== '\n') {
        i++;
      }
      continue;
    }
    const str = /^([rRbBuUfF]{0,2})('''|"""|'|")/.exec(src.slice(i, i + 5));
    if (str && (str[1] === '' || /[A-Za-z]/.test(str[1]))) {
      const quote = str[2];
      let j = i + str[0].length;
      while (j < src.length && !src.startsWith(quote, j)) {
        if (src[j] === '\\') {
          j++;
        } else if (quote.length === 1 && src[j] === '\n') {
          break; // unterminated: stop at the line end
        }
        j++;
      }
      i = j + quote.length;
      tokens.push({ kind: 'op', text: 'str', depth });
      continue;
    }
    if (/[A-Za-z_]/.test(c)) {
      let j = i + 1;
      while (j < src.length && /\w/.test(src[j])) {
        j++;
      }
      tokens.push({ kind: 'name', text: src.slice(i, j), depth });
      i = j;
      continue;
    }
    if (c === '\n') {
      if (depth === 0) {
        tokens.push({ kind: 'newline', text: '\n', depth });
      }
      i++;
      continue;
    }
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    const op = /^(==|!=|<=|>=|:=|->|\*\*=|\/\/=|>>=|<<=|[-+*/%@&|^]=|\*\*|\/\/|.)/.exec(
      src.slice(i, i + 3)
    )![0];
    if ('([{'.includes(op)) {
      tokens.push({ kind: 'op', text: op, depth });
      depth++;
    } else if (')]}'.includes(op)) {
      depth = Math.max(0, depth - 1);
      tokens.push({ kind: 'op', text: op, depth });
    } else {
      tokens.push({ kind: 'op', text: op, depth });
    }
    i += op.length;
  }
  return tokens;
}

const ASSIGN = /^([-+*/%@&|^]|\*\*|\/\/|>>|<<)?=$/;

// Builtins a cell reads that no cell defines: not worth asking the kernel about.
export const BUILTINS = new Set(
  (
    'abs all any bool bytes callable chr dict dir divmod enumerate filter float format ' +
    'frozenset getattr hasattr hash help hex id input int isinstance issubclass iter len list ' +
    'map max min next object oct open ord pow print range repr reversed round set setattr ' +
    'slice sorted str sum super tuple type vars zip display get_ipython Exception ValueError ' +
    'TypeError KeyError IndexError'
  ).split(' ')
);

export interface ICellNames {
  /** names read from outside the cell, first use first */
  uses: string[];
  /** names the cell binds at top level */
  defs: string[];
}

/**
 * What a cell reads and binds. Heuristics (good for notebook code, not a parser):
 * `a, b = …`, `x += …`, `for x in`, `def f`, `class C`, `import a.b as c`, `from m import a`,
 * `with … as x`, `(x := …)` bind; `df.col` reads only `df`; `f(k=…)` does not read `k`;
 * parameters of `def`/`lambda` and comprehension variables are not read from outside (in the
 * whole cell: a scanner has no scopes); a name bound by an earlier statement of the cell is
 * not read from outside (`x = x + 1` still reads x).
 */
export function cellNames(code: string): ICellNames {
  const toks = tokenize(code);
  const defs = new Map<string, number>();
  const uses = new Map<string, number>();
  const params = new Set<string>();
  let pending: string[] = []; // bound by the current statement: effective at its end
  const bind = (name: string, at: number) => {
    if (!KEYWORDS.has(name) && !defs.has(name)) {
      defs.set(name, at);
    }
  };
  let stmtStart = 0;
  const endStatement = (at: number) => {
    pending.forEach(n => bind(n, at));
    pending = [];
    stmtStart = at + 1;
  };
  for (let i = 0; i < toks.length; i++) {
    const t = toks[i];
    const prev = toks[i - 1];
    const next = toks[i + 1];
    if (t.kind === 'newline' || (t.text === ';' && t.depth === 0)) {
      endStatement(i);
      continue;
    }
    if (t.kind !== 'name') {
      // `a, b = …` / `x += …` at the top level: the plain names before it are bound
      if (t.depth === 0 && ASSIGN.test(t.text)) {
        for (let k = stmtStart; k < i; k++) {
          const p = toks[k];
          const before = toks[k - 1];
          const after = toks[k + 1];
          const plain =
            !(before && before.text === '.') && !(after && '.(['.includes(after.text));
          if (p.kind === 'name' && p.depth === 0 && plain && !KEYWORDS.has(p.text)) {
            pending.push(p.text);
            if (uses.get(p.text) === k && t.text === '=') {
              uses.delete(p.text); // `x = 1` is not a read of x (`x += 1` is)
            }
          }
        }
      }
      continue;
    }
    if (prev && prev.text === '.') {
      continue; // an attribute
    }
    if ((t.text === 'def' || t.text === 'class') && next && next.kind === 'name') {
      bind(next.text, i);
      i++;
      if (t.text === 'def') {
        // parameters: names right after `(`, `,`, `*`, `**` inside the def's parentheses
        for (let k = i + 2; k < toks.length && toks[k].depth > t.depth; k++) {
          const before = toks[k - 1];
          if (
            toks[k].kind === 'name' &&
            toks[k].depth === t.depth + 1 &&
            ['(', ',', '*', '**'].includes(before.text)
          ) {
            params.add(toks[k].text);
          }
        }
      }
      continue;
    }
    if (t.text === 'lambda') {
      for (let k = i + 1; k < toks.length && toks[k].text !== ':'; k++) {
        if (toks[k].kind === 'name') {
          params.add(toks[k].text);
        }
      }
      continue;
    }
    if (t.text === 'from' && toks[stmtStart] === t) {
      // the module path up to `import` is not a read
      while (i + 1 < toks.length && toks[i + 1].text !== 'import') {
        i++;
      }
      continue;
    }
    if (t.text === 'import') {
      // `import a.b, c as d` binds a, d; `from m import (a, b as c)` binds a, c
      let k = i + 1;
      for (; k < toks.length && toks[k].kind !== 'newline' && toks[k].text !== ';'; k++) {
        const p = toks[k];
        const before = toks[k - 1];
        const after = toks[k + 1];
        const listed = ['import', ',', '('].includes(before.text);
        if (p.kind === 'name' && p.text !== 'as') {
          if (before.text === 'as' || (listed && !(after && after.text === 'as'))) {
            bind(p.text, i);
          }
        }
      }
      i = k - 1;
      continue;
    }
    if (t.text === 'for' && t.depth === 0) {
      for (let k = i + 1; k < toks.length && toks[k].text !== 'in'; k++) {
        if (toks[k].kind === 'name') {
          bind(toks[k].text, i);
        }
      }
      continue;
    }
    if (t.text === 'as' && next && next.kind === 'name') {
      bind(next.text, i); // with … as x, except E as e
      continue;
    }
    if (t.text === 'for') {
      // a comprehension: `[x for x in xs]` reads xs, not x
      for (let k = i + 1; k < toks.length && toks[k].text !== 'in'; k++) {
        if (toks[k].kind === 'name') {
          params.add(toks[k].text);
        }
      }
      continue;
    }
    if (next && next.text === ':=') {
      bind(t.text, i);
      continue;
    }
    if (t.depth > 0 && next && next.text === '=' && prev && ['(', ','].includes(prev.text)) {
      continue; // a keyword argument
    }
    if (!KEYWORDS.has(t.text) && !uses.has(t.text)) {
      uses.set(t.text, i);
    }
  }
  endStatement(toks.length);
  const external = [...uses.entries()]
    .filter(([name, at]) => !params.has(name) && !((defs.get(name) ?? Infinity) < at))
    .sort((a, b) => a[1] - b[1])
    .map(([name]) => name);
  return { uses: external, defs: [...defs.keys()] };
}
