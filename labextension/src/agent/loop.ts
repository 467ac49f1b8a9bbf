/**
 * The agent loop, in the browser (as jupyterlite-ai does): the conversation and the tools go to
 * the server's OpenAI route, so the same loop drives the local engine (grammar-constrained
 * calls) and any remote OpenAI-compatible backend. Each call is validated (tools.ts); reads
 * answer at once; edits, inserts and deletes wait for the user's Accept; a run waits for "Run"
 * unless runs are allowed. Every result goes back as a `role: "tool"` message. A turn ends when
 * the model answers in words, on Stop, or at the step limit. No JupyterLab imports: the host
 * (view.ts + nbops.ts) supplies the notebook and the UI; jest drives it with fakes.
 */
import { ICellState, INotebookOps, TurnCheckpoint } from './checkpoint';
import { AgentCall, SYSTEM, TOOLS, isProposal, requestText, validateCall } from './tools';

export interface IWireCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

export interface IAgentMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string | null;
  tool_calls?: IWireCall[];
  tool_call_id?: string;
}

/** A change the user accepts or rejects (the diff is of `before` → `after`). */
export interface IProposal {
  call: AgentCall;
  /** "Edit cell 3", "Insert cell 2", "Delete cell 4" */
  title: string;
  before: string;
  after: string;
  language: string;
}

export interface IAgentHost extends INotebookOps {
  /** POST `body` to the OpenAI chat route (streamed: the words show as they come); the answer
   * as one chat.completion-shaped object (stream.ts folds the chunks) */
  complete(body: Record<string, unknown>, signal: AbortSignal): Promise<any>;
  language(): string;
  /** cells `first`..`last` (from 1) with outputs, as text for the model */
  readCells(first: number, last: number): string;
  readVariable(name: string): Promise<string>;
  /** run the cell and return its output as text */
  run(cellId: string): Promise<string>;
  /** show a proposal; resolves true on Accept, false on Reject or Stop */
  propose(p: IProposal, batch: number): Promise<boolean>;
  /** show the code and a "Run" button; resolves true to run */
  askRun(cell: number, source: string): Promise<boolean>;
  allowRuns(): boolean;
  /** a line of the turn's trace (tool calls and results) */
  trace(text: string, kind: 'call' | 'result' | 'error'): void;
}

export interface ITurnResult {
  /** the model's words at the end ('' if none) */
  answer: string;
  reason: 'answered' | 'stopped' | 'step-limit' | 'error';
  steps: number;
  error?: string;
  checkpoint: TurnCheckpoint;
}

/**
 * "first": the first request must call a tool (a read is enough), later ones may answer in
 * words: a 1-2B model asked for a change otherwise tends to describe it instead of making it.
 * "auto": the model decides every step; "required": every step calls a tool (ends at the limit).
 */
export type ToolChoice = 'first' | 'auto' | 'required';

export function toolChoiceFor(choice: ToolChoice, step: number): 'auto' | 'required' {
  return choice === 'required' || (choice === 'first' && step === 1) ? 'required' : 'auto';
}

const CELL_CHARS = 1200;
const NOTEBOOK_CHARS = 6000;

/** The notebook as the system prompt shows it: "# cell 2 (code)" and the source (truncated). */
export function notebookOutline(cells: ICellState[]): string {
  let left = NOTEBOOK_CHARS;
  const parts = cells.map((c, i) => {
    let src = c.source.length > CELL_CHARS ? `${c.source.slice(0, CELL_CHARS)}\n… (truncated)` : c.source;
    if (left <= 0) {
      src = '… (not shown: read_cells)';
    }
    left -= src.length;
    return `# cell ${i + 1} (${c.type})\n${src}`;
  });
  return parts.length ? parts.join('\n\n') : '(the notebook is empty)';
}

export class AgentTurn {
  readonly checkpoint: TurnCheckpoint;
  private abort = new AbortController();
  private stopped = false;

  constructor(
    private host: IAgentHost,
    private options: { stepLimit: number; temperature: number; maxTokens: number; agentToolChoice?: ToolChoice }
  ) {
    this.checkpoint = new TurnCheckpoint(host);
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
  }

  get isStopped(): boolean {
    return this.stopped;
  }

  /** Run one turn: `history` (earlier user/assistant words) and the new request `text`. */
  async run(history: IAgentMessage[], text: string): Promise<ITurnResult> {
    const messages: IAgentMessage[] = [
      { role: 'system', content: SYSTEM },
      ...history,
      { role: 'user', content: requestText(notebookOutline(this.host.cells()), text) }
    ];
    const result = (reason: ITurnResult['reason'], steps: number, answer = '', error?: string): ITurnResult => ({
      answer,
      reason,
      steps,
      error,
      checkpoint: this.checkpoint
    });
    for (let step = 1; step <= this.options.stepLimit; step++) {
      let reply: any;
      try {
        reply = await this.host.complete(
          {
            messages,
            tools: TOOLS,
            tool_choice: toolChoiceFor(this.options.agentToolChoice ?? 'first', step),
            temperature: this.options.temperature,
            max_tokens: this.options.maxTokens,
            stream: true // the host folds the chunks back into one message (stream.ts)
          },
          this.abort.signal
        );
      } catch (e) {
        return this.stopped ? result('stopped', step) : result('error', step, '', (e as Error).message);
      }
      if (this.stopped) {
        return result('stopped', step);
      }
      const msg = reply?.choices?.[0]?.message || {};
      const calls: IWireCall[] = Array.isArray(msg.tool_calls) ? msg.tool_calls.slice(0, 8) : [];
      const words = typeof msg.content === 'string' ? msg.content : '';
      if (!calls.length) {
        return result('answered', step, words);
      }
      messages.push({ role: 'assistant', content: words || null, tool_calls: calls });
      // validate the whole batch against the notebook as the model saw it
      const cells = this.host.cells();
      const checked = calls.map(c => validateCall(c?.function?.name, c?.function?.arguments, cells));
      const batch = checked.filter(v => v.ok && isProposal(v.call)).length;
      const answers = await Promise.all(
        calls.map(async (c, i) => {
          const v = checked[i];
          this.host.trace(`${String(c?.function?.name).slice(0, 40)}(${String(c?.function?.arguments ?? '').slice(0, 200)})`, 'call');
          const content = v.ok ? await this.execute(v.call, batch) : `error: ${v.error}`;
          this.host.trace(content, content.startsWith('error') ? 'error' : 'result'); // as each settles
          return content;
        })
      );
      answers.forEach((content, i) => {
        messages.push({ role: 'tool', tool_call_id: String(calls[i]?.id ?? `call_${i}`), content });
      });
      if (this.stopped) {
        return result('stopped', step);
      }
    }
    return result('step-limit', this.options.stepLimit);
  }

  private label(cellId: string): number {
    return this.host.cells().findIndex(c => c.id === cellId) + 1;
  }

  private async execute(call: AgentCall, batch: number): Promise<string> {
    const host = this.host;
    try {
      switch (call.tool) {
        case 'read_cells':
          return host.readCells(call.first, call.last);
        case 'read_variable':
          return await host.readVariable(call.name);
        case 'run_cell': {
          const source = host.cells().find(c => c.id === call.cellId)?.source ?? '';
          const ok = host.allowRuns() || (await host.askRun(call.cell, source));
          if (!ok || this.stopped) {
            return `the user did not run cell ${call.cell}`;
          }
          return `ran cell ${this.label(call.cellId)}. Output:\n${await host.run(call.cellId)}`;
        }
        default:
          return await this.proposeChange(call, batch);
      }
    } catch (e) {
      return `error: ${(e as Error).message}`;
    }
  }

  private async proposeChange(call: AgentCall, batch: number): Promise<string> {
    const cells = this.host.cells();
    const language = this.host.language();
    let p: IProposal;
    if (call.tool === 'edit_cell') {
      const before = cells.find(c => c.id === call.cellId)?.source ?? '';
      p = { call, title: `Edit cell ${call.cell}`, before, after: call.source, language };
    } else if (call.tool === 'insert_cell') {
      p = { call, title: `Insert ${call.type} cell ${call.position}`, before: '', after: call.source, language: call.type === 'code' ? language : 'markdown' };
    } else if (call.tool === 'delete_cell') {
      const before = cells.find(c => c.id === call.cellId)?.source ?? '';
      p = { call, title: `Delete cell ${call.cell}`, before, after: '', language };
    } else {
      return 'error: not a change';
    }
    const accepted = await this.host.propose(p, batch);
    if (!accepted || this.stopped) {
      return `rejected by the user: ${p.title.toLowerCase()} not done; the notebook is unchanged`;
    }
    if (call.tool === 'edit_cell') {
      this.checkpoint.edit(call.cellId, call.source);
      return `accepted: cell ${this.label(call.cellId)} now has the new source`;
    }
    if (call.tool === 'insert_cell') {
      const id = this.checkpoint.insert(call.afterId, call.type, call.source);
      return `accepted: inserted as cell ${this.label(id)} of ${this.host.cells().length}`;
    }
    this.checkpoint.remove((call as { cellId: string }).cellId);
    return `accepted: cell deleted; the notebook now has ${this.host.cells().length} cells`;
  }
}
