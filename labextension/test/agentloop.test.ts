import { ICellState } from '../src/agent/checkpoint';
import { AgentTurn, IAgentHost, IProposal, notebookOutline } from '../src/agent/loop';
import { SYSTEM, requestText } from '../src/agent/tools';

function call(name: string, args: unknown, id = `c_${name}`) {
  return { id, type: 'function', function: { name, arguments: JSON.stringify(args) } };
}

/** A scripted model and an array notebook; `decide` answers proposals and run requests. */
function fakeHost(replies: any[], decide: (p: IProposal | string) => boolean = () => true) {
  let cells: ICellState[] = [
    { id: 'a', type: 'code', source: 'x = 1' },
    { id: 'b', type: 'code', source: 'print(y)' }
  ];
  let n = 0;
  const requests: any[] = [];
  const ran: string[] = [];
  const host: IAgentHost = {
    cells: () => cells.map(c => ({ ...c })),
    setSource: (id, s) => (cells.find(c => c.id === id)!.source = s),
    insert: (i, type, source, id) => {
      const nid = id && !cells.some(c => c.id === id) ? id : `n${n++}`;
      cells.splice(i, 0, { id: nid, type, source });
      return nid;
    },
    remove: id => (cells = cells.filter(c => c.id !== id)),
    language: () => 'python',
    readCells: (a, b) => `cells ${a}-${b}`,
    readVariable: async name => `${name}: int`,
    run: async id => (ran.push(id), 'out'),
    complete: async body => {
      requests.push(JSON.parse(JSON.stringify(body)));
      const r = replies.shift();
      if (r instanceof Error) {
        throw r;
      }
      return { choices: [{ message: r ?? { content: 'done' } }] };
    },
    propose: async p => decide(p),
    askRun: async (_, source) => decide(source),
    allowRuns: () => false,
    trace: () => undefined
  };
  return { host, requests, ran, cells: () => cells };
}

const opts = { stepLimit: 8, temperature: 0, maxTokens: 64 };

describe('AgentTurn', () => {
  it('sends tools, applies an accepted edit, returns results as role "tool"', async () => {
    const f = fakeHost([{ content: null, tool_calls: [call('edit_cell', { cell: 2, source: 'y = 2\nprint(y)' })] }, { content: 'Fixed.' }]);
    const r = await new AgentTurn(f.host, opts).run([], 'fix the NameError');
    expect(r).toMatchObject({ reason: 'answered', answer: 'Fixed.', steps: 2 });
    expect(f.cells()[1].source).toBe('y = 2\nprint(y)');
    expect(f.requests[0].tools.map((t: any) => t.function.name)).toContain('edit_cell');
    const second = f.requests[1].messages;
    expect(second[second.length - 2].tool_calls[0].function.name).toBe('edit_cell');
    expect(second[second.length - 1]).toMatchObject({ role: 'tool', tool_call_id: 'c_edit_cell' });
    expect(second[second.length - 1].content).toMatch(/^accepted/);
    r.checkpoint.undo();
    expect(f.cells()[1].source).toBe('print(y)');
  });

  it('the system text is the same for every notebook; the outline rides in the user turn', async () => {
    const f = fakeHost([{ content: 'ok' }]);
    await new AgentTurn(f.host, opts).run([], 'fix it');
    const [system, user] = f.requests[0].messages;
    expect(system).toEqual({ role: 'system', content: SYSTEM });
    expect(user.content).toBe('The notebook:\n# cell 1 (code)\nx = 1\n\n# cell 2 (code)\nprint(y)\n\nfix it');
    expect(requestText('$& {request}', '{outline} $1')).toBe('The notebook:\n$& {request}\n\n{outline} $1');
  });

  it('tool_choice: the first request must call a tool by default, later ones may answer', async () => {
    const f = fakeHost([{ content: null, tool_calls: [call('read_cells', { first: 1, last: 2 })] }, { content: 'ok' }]);
    await new AgentTurn(f.host, opts).run([], 'x');
    expect(f.requests.map(b => b.tool_choice)).toEqual(['required', 'auto']);
    const g = fakeHost([{ content: 'ok' }]);
    await new AgentTurn(g.host, { ...opts, agentToolChoice: 'auto' }).run([], 'x');
    expect(g.requests[0].tool_choice).toBe('auto');
  });

  it('a rejected delete and a declined run change nothing and say so', async () => {
    const f = fakeHost(
      [{ content: '', tool_calls: [call('delete_cell', { cell: 1 }, 'd1'), call('delete_cell', { cell: 2 }, 'd2'), call('run_cell', { cell: 1 }, 'r')] }],
      () => false
    );
    const r = await new AgentTurn(f.host, opts).run([], 'x');
    expect(f.cells().map(c => c.source)).toEqual(['x = 1', 'print(y)']);
    expect(f.ran).toEqual([]);
    const tools = f.requests[1].messages.filter((m: any) => m.role === 'tool');
    expect(tools.map((m: any) => m.content.split(':')[0])).toEqual(['rejected by the user', 'rejected by the user', 'the user did not run cell 1']);
    expect(r.checkpoint.empty).toBe(true);
  });

  it('invalid calls answer with an error the model can read; the step limit ends the turn', async () => {
    const bad = { content: '', tool_calls: [call('edit_cell', { cell: 9, source: '' })] };
    const f = fakeHost([bad, bad, bad, bad]);
    const r = await new AgentTurn(f.host, { ...opts, stepLimit: 3 }).run([], 'x');
    expect(r).toMatchObject({ reason: 'step-limit', steps: 3 });
    expect(f.requests).toHaveLength(3);
    const last = f.requests[2].messages;
    expect(last[last.length - 1].content).toMatch(/^error: cell 9 does not exist/);
  });

  it('stop during a request ends the turn as stopped', async () => {
    const f = fakeHost([]);
    const turn = new AgentTurn(f.host, opts);
    f.host.complete = (_, signal) =>
      new Promise((_r, reject) => signal.addEventListener('abort', () => reject(new Error('aborted'))));
    const running = turn.run([], 'x');
    turn.stop();
    expect((await running).reason).toBe('stopped');
  });

  it('the outline numbers cells from 1', () => {
    expect(notebookOutline([{ id: 'a', type: 'code', source: 's' }])).toBe('# cell 1 (code)\ns');
  });
});
