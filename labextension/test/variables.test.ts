import {
  IKernelVariable,
  IVariableDescription,
  NamesCache,
  chipLabel,
  completeMention,
  definitionsFor,
  fitVariables,
  formatTokens,
  insertMention,
  mentionAt,
  parseMentions,
  variablesPart,
  VARIABLES_LABEL
} from '../src/variables';
import { cellNames, tokenize } from '../src/pyscan';

describe('cellNames', () => {
  it('finds what a cell reads and binds', () => {
    const code = [
      'import pandas as pd, numpy',
      'from os.path import join as pjoin, exists',
      'total = df.groupby(key)["revenue"].sum()  # a comment with fake_name',
      's = "a string with in_string_name"',
      'rows = [r for r in records if r > limit]',
      'def scale(x, factor=default_factor, *args, **kw):',
      '    return x * factor * GLOBAL',
      'result = scale(total, factor=2)',
      'plt.plot(result)'
    ].join('\n');
    const { uses, defs } = cellNames(code);
    expect(uses).toEqual([
      'df',
      'key',
      'records',
      'limit',
      'default_factor',
      'GLOBAL',
      'plt'
    ]);
    expect(defs).toEqual(
      expect.arrayContaining(['pd', 'numpy', 'pjoin', 'exists', 'total', 's', 'rows', 'scale', 'result'])
    );
    expect(defs).not.toContain('join');
    expect(defs).not.toContain('os');
  });

  it('keeps reads of names the same statement rebinds, and augmented assignment', () => {
    expect(cellNames('x = x + 1').uses).toEqual(['x']);
    expect(cellNames('count += 1').uses).toEqual(['count']);
    expect(cellNames('y = 1\nz = y * 2').uses).toEqual([]);
    expect(cellNames('a, b = pair').uses).toEqual(['pair']);
    expect(cellNames('a, b = pair').defs).toEqual(['a', 'b']);
    expect(cellNames('df["new"] = df.old * 2').uses).toEqual(['df']);
  });

  it('understands loops, with, walrus, lambdas and keyword arguments', () => {
    const r = cellNames(
      'for i, item in enumerate(items):\n    print(i, item)\n' +
        'with open(path) as fh:\n    text = fh.read()\n' +
        'if (n := len(text)) > cap:\n    pass\n' +
        'key_fn = lambda row: row[col]\n' +
        'sorted(data, key=key_fn, reverse=flag)'
    );
    expect(r.uses).toEqual(['enumerate', 'items', 'print', 'open', 'path', 'len', 'cap', 'col', 'sorted', 'data', 'flag']);
    expect(r.defs).toEqual(expect.arrayContaining(['i', 'item', 'fh', 'text', 'n', 'key_fn']));
  });

  it('skips IPython magics, shell lines and non-Python cell magics', () => {
    expect(cellNames('%matplotlib inline\n!pip install x\nplot(data)').uses).toEqual(['plot', 'data']);
    expect(cellNames('%%bash\necho $HOME').uses).toEqual([]);
    expect(cellNames('%%time\nfit(model)').uses).toEqual(['fit', 'model']);
  });

  it('tokenizes strings with quotes and escapes as one token', () => {
    const names = tokenize('f"{a}" + \'it\\\'s\' + """x\ny""" + b').filter(t => t.kind === 'name');
    expect(names.map(t => t.text)).toEqual(['b']);
  });
});

describe('definitionsFor (def-use over the notebook)', () => {
  const cells = [
    'import pandas as pd',
    'df = pd.read_csv("sales.csv")',
    '# markdown is passed as code-less text',
    'threshold = 10',
    'df = df.dropna()',
    'big = df[df.revenue > threshold]\nprint(big, model)'
  ];

  it('gives the latest earlier definition of each name, latest first', () => {
    const { defined, undefinedNames } = definitionsFor(cells, 5);
    expect(defined).toEqual([
      { name: 'df', cell: 4 },
      { name: 'threshold', cell: 3 }
    ]);
    expect(undefinedNames).toEqual(['model']); // print is a builtin: not asked about
  });

  it('never looks at later cells', () => {
    expect(definitionsFor(cells, 2).defined).toEqual([]);
    expect(definitionsFor(cells, 1).defined).toEqual([{ name: 'pd', cell: 0 }]);
  });

  it('scans each source once with a cache', () => {
    const cache = new NamesCache();
    const many = Array.from({ length: 200 }, (_, i) => `v${i} = v${i - 1 < 0 ? 0 : i - 1} + 1`);
    many[0] = 'v0 = 1';
    const first = definitionsFor(many, 199, cache);
    expect(first.defined).toEqual([{ name: 'v198', cell: 198 }]);
    const again = definitionsFor(many, 150, cache);
    expect(again.defined).toEqual([{ name: 'v149', cell: 149 }]);
  });
});

describe('mentions', () => {
  it('parses @names, dotted ones, once each, and not e-mail addresses', () => {
    expect(parseMentions('Why does @df differ from @df2? See @model.config and a@b.com, @df')).toEqual([
      'df',
      'df2',
      'model.config'
    ]);
    expect(parseMentions('@start of text')).toEqual(['start']);
  });

  it('finds the mention being typed and completes it from the kernel variables', () => {
    expect(mentionAt('plot @sa', 8)).toEqual({ start: 5, prefix: 'sa' });
    expect(mentionAt('plot @', 6)).toEqual({ start: 5, prefix: '' });
    expect(mentionAt('mail a@b', 8)).toBeNull();
    expect(mentionAt('plot sales', 10)).toBeNull();
    const vars: IKernelVariable[] = [
      { name: 'sales', type: 'pandas DataFrame', summary: '' },
      { name: 'presales', type: 'list', summary: '' },
      { name: 'Salary', type: 'int', summary: '' },
      { name: 'other', type: 'int', summary: '' }
    ];
    expect(completeMention('sa', vars).map(v => v.name)).toEqual(['Salary', 'sales', 'presales']);
    expect(insertMention('plot @sa by region', 8, 'sales')).toEqual({
      text: 'plot @sales  by region',
      cursor: 12
    });
  });
});

describe('chips, budgets and the context part', () => {
  const d = (name: string, tokens: number): IVariableDescription => ({
    name,
    tokens,
    text: `${name}: something`
  });

  it('formats token counts', () => {
    expect(formatTokens(87)).toBe('87');
    expect(formatTokens(1234)).toBe('1.2k');
    expect(formatTokens(12345)).toBe('12k');
    expect(chipLabel(d('df', 120))).toBe('df · 120 tokens');
  });

  it('keeps mentioned variables first, automatic ones within their own budget', () => {
    const { kept, dropped } = fitVariables(
      [d('df', 400), d('model', 300)],
      [d('df', 50), d('a', 200), d('b', 100), d('c', 50)],
      1000,
      256
    );
    expect(kept.map(k => k.name)).toEqual(['df', 'model', 'a', 'c']);
    expect(dropped).toEqual(['b']);
    const tight = fitVariables([d('df', 400), d('model', 300)], [], 500);
    expect(tight.kept.map(k => k.name)).toEqual(['df']);
    expect(tight.dropped).toEqual(['model']);
  });

  it('builds the one text part the server receives', () => {
    expect(variablesPart([])).toBeNull();
    expect(variablesPart([d('df', 3), d('n', 2)])).toEqual({
      kind: 'text',
      label: VARIABLES_LABEL,
      text: 'df: something\nn: something'
    });
  });
});
