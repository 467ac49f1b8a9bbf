import { diffLines, foldContext } from '../src/agent/diff';
import { ICellState, INotebookOps, TurnCheckpoint } from '../src/agent/checkpoint';
import { TOOLS, isProposal, validateCall } from '../src/agent/tools';

const cells = [
  { id: 'a', type: 'code' },
  { id: 'b', type: 'markdown' },
  { id: 'c', type: 'code' }
];

describe('validateCall', () => {
  it('resolves cell numbers (from 1) to ids', () => {
    const v = validateCall('edit_cell', '{"cell": 3, "source": "x = 1"}', cells);
    expect(v).toEqual({ ok: true, call: { tool: 'edit_cell', cell: 3, cellId: 'c', source: 'x = 1' } });
    expect(isProposal((v as any).call)).toBe(true);
  });

  it('rejects out-of-range cells, bad JSON, wrong types, extra and missing arguments', () => {
    const bad: [string, unknown][] = [
      ['edit_cell', '{"cell": 4, "source": ""}'],
      ['edit_cell', '{"cell": 0, "source": ""}'],
      ['delete_cell', '{"cell": 1.5}'],
      ['delete_cell', '{"cell": "1"}'],
      ['delete_cell', '{cell: 1}'],
      ['delete_cell', '[1]'],
      ['delete_cell', '{"cell": 1, "all": true}'],
      ['edit_cell', '{"cell": 1}'],
      ['insert_cell', '{"position": 5, "type": "code", "source": ""}'],
      ['insert_cell', '{"position": 1, "type": "raw", "source": ""}'],
      ['run_cell', '{"cell": 2}'], // Markdown
      ['read_variable', '{"name": "__import__(\'os\')"}'],
      ['read_variable', `{"name": "${'x'.repeat(65)}"}`], // maxLength 64: a runaway name
      ['read_cells', '{"first": 3, "last": 2}'],
      ['rm_rf', '{}'],
      ['edit_cell', null]
    ];
    for (const [name, args] of bad) {
      const v = validateCall(name, args, cells);
      expect(v.ok).toBe(false);
      expect(typeof (v as any).error).toBe('string');
    }
  });

  it('insert positions go from 1 to n + 1 and name the cell before', () => {
    const top = validateCall('insert_cell', '{"position": 1, "type": "code", "source": "a"}', cells);
    expect((top as any).call.afterId).toBeNull();
    const end = validateCall('insert_cell', { position: 4, type: 'markdown', source: '# t' }, cells);
    expect((end as any).call.afterId).toBe('c');
  });

  it('read_cells clamps the last cell; run_cell is not a proposal', () => {
    expect(validateCall('read_cells', '{"first": 2, "last": 99}', cells)).toEqual({
      ok: true,
      call: { tool: 'read_cells', first: 2, last: 3 }
    });
    const run = validateCall('run_cell', '{"cell": 1}', cells);
    expect(isProposal((run as any).call)).toBe(false);
  });

  it('every tool schema is closed and small', () => {
    for (const t of TOOLS) {
      expect(t.function.parameters.additionalProperties).toBe(false);
      // cell numbers start at 1 in the schema too, so the local grammar cannot write 0
      for (const p of Object.values(t.function.parameters.properties) as any[]) {
        expect(p.type !== 'integer' || p.minimum === 1).toBe(true);
      }
    }
    expect(JSON.stringify(TOOLS).length).toBeLessThan(1800);
    expect(validateCall('delete_cell', '{"cell": 0}', cells)).toEqual({
      ok: false,
      error: '"cell" must be at least 1 (cells are numbered from 1)'
    });
  });
});

describe('diffLines', () => {
  it('marks removed and added lines, keeps the rest', () => {
    const d = diffLines('a\nb\nc\nd', 'a\nB\nc\nd\ne');
    expect(d.lines.map(l => l.op + l.text)).toEqual([' a', '-b', '+B', ' c', ' d', '+e']);
    expect([d.added, d.removed]).toEqual([2, 1]);
  });

  it('an insert is all added, a delete all removed', () => {
    expect(diffLines('', 'x\ny').lines.map(l => l.op)).toEqual(['+', '+']);
    expect(diffLines('x\ny', '').lines.map(l => l.op)).toEqual(['-', '-']);
    expect(diffLines('same', 'same')).toEqual({ lines: [{ op: ' ', text: 'same' }], added: 0, removed: 0 });
  });

  it('folds long unchanged runs', () => {
    const before = Array.from({ length: 20 }, (_, i) => `l${i}`).join('\n');
    const after = before.replace('l10', 'L10');
    const folded = foldContext(diffLines(before, after).lines, 2);
    expect(folded[0]).toEqual({ op: '…', skipped: 8 });
    expect(folded.filter(l => l.op !== '…').map(l => l.op + (l as any).text)).toEqual([
      ' l8', ' l9', '-l10', '+L10', ' l11', ' l12'
    ]);
    expect(folded[folded.length - 1]).toEqual({ op: '…', skipped: 7 });
  });
});

class ArrayNotebook implements INotebookOps {
  next = 0;
  constructor(public list: ICellState[]) {}
  cells(): ICellState[] {
    return this.list.map(c => ({ ...c }));
  }
  setSource(id: string, source: string): void {
    this.list.find(c => c.id === id)!.source = source;
  }
  insert(index: number, type: string, source: string, id?: string): string {
    const nid = id && !this.list.some(c => c.id === id) ? id : `new${this.next++}`;
    this.list.splice(index, 0, { id: nid, type, source });
    return nid;
  }
  remove(id: string): void {
    this.list = this.list.filter(c => c.id !== id);
  }
}

const nb0 = () =>
  new ArrayNotebook([
    { id: 'a', type: 'code', source: 'A' },
    { id: 'b', type: 'code', source: 'B' },
    { id: 'c', type: 'markdown', source: 'C' },
    { id: 'd', type: 'code', source: 'D' }
  ]);

describe('TurnCheckpoint', () => {
  it('undoes edits, inserts and deletes, leaving the user edit elsewhere', () => {
    const nb = nb0();
    const cp = new TurnCheckpoint(nb);
    cp.edit('a', 'A1');
    cp.edit('a', 'A2');
    const n = cp.insert('b', 'code', 'NEW');
    cp.edit(n, 'NEW2');
    cp.remove('c');
    nb.setSource('d', 'D-user'); // the user types elsewhere meanwhile
    expect(nb.list.map(c => c.source)).toEqual(['A2', 'B', 'NEW2', 'D-user']);
    expect(cp.count).toBe(3);
    cp.undo();
    expect(nb.list.map(c => [c.id, c.source])).toEqual([
      ['a', 'A'],
      ['b', 'B'],
      ['c', 'C'],
      ['d', 'D-user']
    ]);
    expect(cp.empty).toBe(true);
  });

  it('restores an edited-then-deleted cell with its first source, and runs of deletes in order', () => {
    const nb = nb0();
    const cp = new TurnCheckpoint(nb);
    cp.edit('b', 'B1');
    cp.remove('b');
    cp.remove('c');
    cp.remove('a');
    cp.remove('d');
    expect(nb.list).toEqual([]);
    cp.undo();
    expect(nb.list.map(c => c.id + c.source)).toEqual(['aA', 'bB', 'cC', 'dD']);
  });

  it('a cell inserted and deleted in the same turn leaves nothing to undo', () => {
    const nb = nb0();
    const cp = new TurnCheckpoint(nb);
    const n = cp.insert(null, 'code', 'tmp');
    expect(nb.list[0].id).toBe(n);
    cp.remove(n);
    expect(cp.empty).toBe(true);
    expect(() => cp.edit('zzz', 'x')).toThrow('gone');
  });

  it('restores a deleted cell by index when its neighbour went too (new ids)', () => {
    const nb = nb0();
    const cp = new TurnCheckpoint(nb);
    cp.remove('b');
    nb.list = nb.list.filter(c => c.id !== 'a'); // the user deleted the neighbour
    cp.undo();
    expect(nb.list.map(c => c.source)).toEqual(['B', 'C', 'D']);
  });
});
