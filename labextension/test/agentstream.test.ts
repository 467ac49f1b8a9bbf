import { ChunkFolder, readChatStream } from '../src/agent/stream';

const chunk = (delta: any, finish: string | null = null) => ({ choices: [{ index: 0, delta, finish_reason: finish }] });

/** An SSE body split at awkward places, as a network delivers it. */
function sse(chunks: any[], cut = 7, status = 200): Response {
  const text = chunks.map(c => `data: ${typeof c === 'string' ? c : JSON.stringify(c)}\n\n`).join('');
  const bytes = new TextEncoder().encode(text);
  const body = new ReadableStream({
    start(ctrl) {
      for (let i = 0; i < bytes.length; i += cut) {
        ctrl.enqueue(bytes.slice(i, i + cut));
      }
      ctrl.close();
    }
  });
  return new Response(body, { status, headers: { 'Content-Type': 'text/event-stream' } });
}

describe('agent streaming', () => {
  it('words stream out as they come and fold into one message', async () => {
    const words: string[] = [];
    const r = await readChatStream(sse([chunk({ role: 'assistant', content: '' }), chunk({ content: 'Déjà ' }), chunk({ content: 'vu.' }, 'stop'), '[DONE]']), t => words.push(t));
    expect(words).toEqual(['Déjà ', 'vu.']);
    expect(r.choices[0].message).toEqual({ role: 'assistant', content: 'Déjà vu.' });
    expect(r.choices[0].finish_reason).toBe('stop');
  });

  it('tool calls in pieces are joined by index; ids kept or made', async () => {
    const r = await readChatStream(
      sse([
        chunk({ tool_calls: [{ index: 0, id: 'c1', type: 'function', function: { name: 'edit_cell', arguments: '' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '{"cell": 1, ' } }] }),
        chunk({ tool_calls: [{ index: 0, function: { arguments: '"source": "a = 10"}' } }] }),
        chunk({ tool_calls: [{ index: 1, function: { name: 'run_cell', arguments: '{"cell": 1}' } }] }, 'tool_calls'),
        '[DONE]'
      ]),
      () => undefined
    );
    const calls = r.choices[0].message.tool_calls!;
    expect(calls.map(c => [c.id, c.function.name, JSON.parse(c.function.arguments)])).toEqual([
      ['c1', 'edit_cell', { cell: 1, source: 'a = 10' }],
      ['call_1', 'run_cell', { cell: 1 }]
    ]);
    expect(r.choices[0].message.content).toBeNull();
  });

  it('an error status or an error chunk is an error with the server message', async () => {
    const bad = new Response(JSON.stringify({ error: { message: 'prompt too long' } }), { status: 400 });
    await expect(readChatStream(bad, () => undefined)).rejects.toThrow('prompt too long');
    await expect(readChatStream(sse([{ error: { message: 'engine died' } }]), () => undefined)).rejects.toThrow('engine died');
  });

  it('a stream without [DONE] still ends; odd indexes are ignored', async () => {
    const f = new ChunkFolder();
    f.add(chunk({ tool_calls: [{ index: 999, function: { name: 'x' } }, { index: -1 }] }));
    expect(f.reply().choices[0].message.tool_calls).toBeUndefined();
    const r = await readChatStream(sse([chunk({ content: 'ok' })], 3), () => undefined);
    expect(r.choices[0].message.content).toBe('ok');
  });
});
