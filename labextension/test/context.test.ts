import {
  ICellLike,
  cellLabel,
  cellPart,
  errorPart,
  estimateTokens,
  imageParts,
  outputParts,
  parseDataUrl,
  partsForCells,
  stripAnsi,
  totalTokens,
  MAX_OUTPUT_CHARS
} from '../src/context';
import { notebookPart } from '../src/notebookContext';

const failing: ICellLike = {
  cell_type: 'code',
  source: ['x = 1\n', '1/0'],
  execution_count: 3,
  outputs: [
    { output_type: 'stream', name: 'stdout', text: ['before\n'] },
    {
      output_type: 'error',
      ename: 'ZeroDivisionError',
      evalue: 'division by zero',
      traceback: [
        '\x1b[0;31m---------------------------------------------------------------------------\x1b[0m',
        '\x1b[0;31mZeroDivisionError\x1b[0m                         Traceback (most recent call last)',
        'Cell \x1b[0;32mIn[3], line 2\x1b[0m\n\x1b[1;32m----> 2\x1b[0m \x1b[38;5;241m1\x1b[39m\x1b[38;5;241m/\x1b[39m\x1b[38;5;241m0\x1b[39m',
        '\x1b[0;31mZeroDivisionError\x1b[0m: division by zero'
      ]
    }
  ]
};

const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

const figure: ICellLike = {
  cell_type: 'code',
  source: 'plt.plot([1,2,3])',
  execution_count: 5,
  outputs: [
    { output_type: 'execute_result', data: { 'text/plain': '[<matplotlib.lines.Line2D>]' } },
    {
      output_type: 'display_data',
      data: { 'image/png': PNG + '\n', 'text/plain': '<Figure size 640x480 with 1 Axes>' }
    },
    { output_type: 'display_data', data: { 'image/svg+xml': ['<svg xmlns="http://www.w3.org/2000/svg">', '<rect/></svg>'] } }
  ]
};

describe('labels and cells', () => {
  it('labels executed cells by execution count, others by position', () => {
    expect(cellLabel(failing, 0)).toBe('cell [3]');
    expect(cellLabel({ cell_type: 'code', source: '', execution_count: null }, 4)).toBe('cell #5');
    expect(cellLabel({ cell_type: 'markdown', source: '# hi' }, 0)).toBe('cell #1');
  });

  it('joins multi-line sources and names the language', () => {
    expect(cellPart(failing, 0, 'python')).toEqual({
      kind: 'cell',
      label: 'cell [3]',
      text: 'x = 1\n1/0',
      language: 'python'
    });
    expect(cellPart({ cell_type: 'markdown', source: '# T' }, 1).language).toBe('markdown');
  });
});

describe('errors and outputs', () => {
  it('puts the traceback, without ANSI colour codes, in an error part', () => {
    const e = errorPart(failing, 0)!;
    expect(e.kind).toBe('error');
    expect(e.label).toBe('cell [3]');
    expect(e.text).toContain('ZeroDivisionError: division by zero');
    expect(e.text).toContain('----> 2 1/0');
    expect(e.text).not.toMatch(/\x1b/);
  });

  it('returns null when there is no error', () => {
    expect(errorPart(figure, 0)).toBeNull();
  });

  it('collects stream and result text, then the error', () => {
    const parts = outputParts(failing, 0);
    expect(parts.map(p => p.kind)).toEqual(['output', 'error']);
    expect(parts[0].text).toBe('before');
  });

  it('leaves images out of text outputs', () => {
    const parts = outputParts(figure, 0);
    expect(parts).toHaveLength(1);
    expect(parts[0].text).toBe('[<matplotlib.lines.Line2D>]');
  });

  it('clips very long outputs and marks them truncated', () => {
    const big: ICellLike = {
      cell_type: 'code', source: 'print(x)', execution_count: 1,
      outputs: [{ output_type: 'stream', name: 'stdout', text: 'y'.repeat(MAX_OUTPUT_CHARS * 2) }]
    };
    const [p] = outputParts(big, 0);
    expect(p.truncated).toBe(true);
    expect(p.text!.length).toBeLessThan(MAX_OUTPUT_CHARS + 20);
    expect(p.text).toMatch(/…\[truncated\]$/);
  });

  it('strips ANSI codes', () => {
    expect(stripAnsi('\x1b[0;31mred\x1b[0m text')).toBe('red text');
  });
});

describe('images', () => {
  it('sends png as base64 image parts and svg as text', () => {
    const parts = imageParts(figure, 0);
    expect(parts).toHaveLength(2);
    expect(parts[0]).toMatchObject({ kind: 'image', mime: 'image/png', data: PNG, label: 'figure 1 of cell [5]' });
    expect(parts[0].summary).toBe('<Figure size 640x480 with 1 Axes>');
    expect(parts[1].kind).toBe('text');
    expect(parts[1].text).toContain('<rect/>');
    expect(parts[1].label).toContain('SVG');
  });

  it('includes images in partsForCells only when asked', () => {
    const without = partsForCells([{ cell: figure, index: 0 }]);
    const withImages = partsForCells([{ cell: figure, index: 0 }], { images: true });
    expect(without.some(p => p.kind === 'image')).toBe(false);
    expect(withImages.some(p => p.kind === 'image')).toBe(true);
  });

  it('parses data URLs from <img src>', () => {
    expect(parseDataUrl(`data:image/png;base64,${PNG}`)).toEqual({ mime: 'image/png', data: PNG });
    const svg = parseDataUrl('data:image/svg+xml,%3Csvg%3E%3C%2Fsvg%3E')!;
    expect(svg.mime).toBe('image/svg+xml');
    expect(Buffer.from(svg.data, 'base64').toString()).toBe('<svg></svg>');
    expect(parseDataUrl('https://example.com/a.png')).toBeNull();
  });
});

describe('whole notebook', () => {
  const cells: ICellLike[] = Array.from({ length: 20 }, (_, i) => ({
    cell_type: i % 5 === 0 ? 'markdown' : 'code',
    source: `# cell ${i}\n` + 'v = 1\n'.repeat(20),
    execution_count: i % 5 === 0 ? undefined : i,
    outputs: []
  }));

  it('fits in a large budget untruncated', () => {
    const r = notebookPart(cells, 100000, 0);
    expect(r.truncated).toBe(false);
    expect(r.included).toBe(20);
    expect(r.part.kind).toBe('notebook');
    expect(r.part.text).toContain('# %% [markdown]');
    expect(r.part.text).not.toContain('truncated');
    expect(r.tokens).toBe(estimateTokens(r.part.text!));
  });

  it('keeps the cells nearest the active cell within the budget and says so', () => {
    const r = notebookPart(cells, 200, 10);
    expect(r.truncated).toBe(true);
    expect(r.part.truncated).toBe(true);
    expect(r.included).toBeGreaterThan(0);
    expect(r.included + r.omitted).toBe(20);
    expect(r.part.text).toContain('# cell 10');
    expect(r.part.text).not.toContain('# cell 0\n');
    expect(r.part.text).toMatch(/cells? omitted to fit the token budget/);
    expect(r.part.text).toMatch(/truncated: \d+ of 20 cells fit in 200 tokens/);
    // the kept cells (without the notes) stay within budget
    expect(r.included * 32).toBeLessThanOrEqual(200 + 32);
  });

  it('marks errors in the notebook summary', () => {
    const r = notebookPart([failing], 1000, 0);
    expect(r.part.text).toContain('# -> ZeroDivisionError: division by zero');
  });
});

describe('tokens and code blocks', () => {
  it('estimates 3.5 characters a token (as the kernel does), images at a fixed cost', () => {
    expect(estimateTokens('')).toBe(0);
    expect(estimateTokens('abcdefg')).toBe(2);
    expect(estimateTokens('abcdefgh')).toBe(3);
    const t = totalTokens([{ kind: 'image', label: 'x', data: PNG }, { kind: 'text', label: 'ab', text: 'abcdefg' }]);
    expect(t).toBe(64 + 1 + 2 + 4);
  });
});
