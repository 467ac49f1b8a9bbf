import {
  chatTitle,
  commandFromHint,
  partLabel,
  pickerEntries,
  plainHint,
  statusLine,
  timeLabel,
  updatedMs,
  usageLine
} from '../src/sidebar/format';

describe('chatTitle', () => {
  it('keeps a short question whole, on one line', () => {
    expect(chatTitle('What is\n  a DataFrame?')).toBe('What is a DataFrame?');
  });
  it('cuts a long question at a word boundary, with an ellipsis', () => {
    const t = chatTitle('Explain how the groupby in this notebook computes the monthly averages per region', 40);
    expect(t.endsWith('…')).toBe(true);
    expect(t.length).toBeLessThanOrEqual(40);
    expect(t).toBe('Explain how the groupby in this…');
  });
  it('cuts one very long word rather than leaving a stub', () => {
    expect(chatTitle('a ' + 'x'.repeat(100), 20)).toBe('a ' + 'x'.repeat(17) + '…');
  });
});

describe('partLabel', () => {
  it('tells code and output of one cell apart', () => {
    expect(partLabel({ kind: 'cell', label: 'cell [1]' })).toBe('cell [1] code');
    expect(partLabel({ kind: 'output', label: 'cell [1]' })).toBe('cell [1] output');
    expect(partLabel({ kind: 'error', label: 'cell [2]' })).toBe('cell [2] error');
    expect(partLabel({ kind: 'image', label: 'figure of cell [3]' })).toBe('figure of cell [3]');
    expect(partLabel({ kind: 'notebook', label: 'notebook a.ipynb' })).toBe('notebook a.ipynb');
  });
});

describe('usageLine', () => {
  it('shows speed, length, first token and why it ended', () => {
    const line = usageLine({
      role: 'assistant',
      content: 'x',
      usage: { tokens_per_second: 101.26, completion_tokens: 12, time_to_first_token: 0.1234 },
      finish_reason: 'length'
    });
    expect(line).toBe('101.3 tokens/s · 12 tokens · first token 0.12 s · hit max tokens');
  });
  it('says stopped for a cancelled answer and nothing for an empty usage', () => {
    expect(usageLine({ role: 'assistant', content: '', finish_reason: 'cancelled' })).toBe('stopped');
    expect(usageLine({ role: 'assistant', content: '' })).toBe('');
  });
});

describe('times', () => {
  it('shows hours:minutes today and the date on other days', () => {
    const now = new Date(2026, 11, 1, 15, 0).getTime();
    expect(timeLabel(new Date(2026, 11, 1, 9, 5).getTime(), now)).toBe('09:05');
    expect(timeLabel(new Date(2026, 10, 28, 23, 59).getTime(), now)).toBe('28 Nov 23:59');
  });
  it('reads saved-chat times in seconds or as ISO strings', () => {
    expect(updatedMs(1700000000)).toBe(1700000000000);
    expect(updatedMs('2026-12-01T10:00:00Z')).toBe(Date.parse('2026-12-01T10:00:00Z'));
    expect(updatedMs('not a date')).toBeNull();
    expect(updatedMs(undefined)).toBeNull();
  });
});

describe('statusLine', () => {
  it('names the ready model, the loading progress and the queue', () => {
    const model = { model: 'm.gguf', label: 'MiniCPM-2B' };
    expect(statusLine({ state: 'ready', progress: 1, model, error: null, hint: null })).toBe('Ready · MiniCPM-2B');
    expect(
      statusLine({ state: 'loading', progress: 0.42, model: null, loading: 'x', error: null, hint: null })
    ).toBe('Loading x… 42%');
    expect(
      statusLine({
        state: 'ready',
        progress: 1,
        model,
        error: null,
        hint: null,
        queue: { running: 1, waiting: 2, concurrency: 1 }
      })
    ).toBe('Ready · MiniCPM-2B · 2 waiting');
    expect(statusLine({ state: 'error', progress: 0, model: null, error: 'boom', hint: null })).toBe('Error: boom');
  });
});

describe('pickerEntries', () => {
  const rows = [
    { name: 'SmolLM2-135M-Instruct', available: true, stand_in: true },
    { name: 'MiniCPM-2B', available: false, stand_in: false },
    { name: 'MiniCPM-1B', available: false, stand_in: false }
  ];
  it('lists models that are here and counts the ones that are not', () => {
    const { entries, missing } = pickerEntries(rows, 'SmolLM2-135M-Instruct');
    expect(entries.map(e => e.label)).toEqual(['Default model', 'SmolLM2-135M-Instruct (stand-in)']);
    expect(missing).toBe(2);
  });
  it('shows a remote model the catalogue does not list, by its label', () => {
    const { entries } = pickerEntries(rows, 'remote-llama', 'llama-3 (remote)');
    expect(entries[entries.length - 1]).toEqual({ value: 'remote-llama', label: 'llama-3 (remote)' });
  });
  it("names other tools' models by their own names, with the store, and loads them by id", () => {
    const found = [
      { name: 'ollama:minicpm-v:latest', label: 'minicpm-v:latest', source: 'ollama', available: true,
        stand_in: false, chat: true, local_path: '/h/.ollama/models/blobs/sha256-aa' },
      { name: 'lmstudio:openbmb/MiniCPM5-1B-GGUF/MiniCPM5-1B-Q4_K_M.gguf', label: 'MiniCPM5-1B-Q4_K_M.gguf',
        source: 'lm studio', available: true, stand_in: false, chat: true },
      { name: 'ollama:nomic-embed-text:latest', label: 'nomic-embed-text:latest', source: 'ollama',
        available: true, stand_in: false, chat: false },
      { name: 'my-finetune', label: 'my-finetune', source: 'models folder', available: true, stand_in: false }
    ];
    const { entries } = pickerEntries(found, null);
    expect(entries.slice(1).map(e => [e.value, e.label, e.source])).toEqual([
      ['ollama:minicpm-v:latest', 'minicpm-v:latest · Ollama', 'ollama'],
      ['lmstudio:openbmb/MiniCPM5-1B-GGUF/MiniCPM5-1B-Q4_K_M.gguf', 'MiniCPM5-1B-Q4_K_M.gguf · LM Studio', 'lm studio'],
      ['my-finetune', 'my-finetune · models folder', 'models folder']
    ]);
    expect(entries[1].path).toBe('/h/.ollama/models/blobs/sha256-aa');
  });
});

describe('the stand-in hint', () => {
  const hint =
    'Using the embedded stand-in SmolLM2-135M, not MiniCPM: run `minicpm download MiniCPM-2B-dpo-Q4_K_M`, or put a MiniCPM GGUF in ~/.cache/minicpm';
  it('finds the download command and drops the backticks', () => {
    expect(commandFromHint(hint)).toBe('minicpm download MiniCPM-2B-dpo-Q4_K_M');
    expect(plainHint(hint)).not.toContain('`');
    expect(commandFromHint('no command here')).toBeNull();
  });
});
