/**
 * Shapes of the minicpm_server API (docs/protocol.md). Types only: no runtime imports,
 * so the API client and the context builder can be unit-tested without JupyterLab.
 */

export type ContextKind =
  | 'cell'
  | 'output'
  | 'error'
  | 'text'
  | 'image'
  | 'notebook';

/** One piece of notebook context, as it travels over the WebSocket (see minicpm.prompts). */
export interface IContextPart {
  kind: ContextKind;
  label: string;
  text?: string;
  language?: string;
  mime?: string;
  /** base64 (images only) */
  data?: string;
  summary?: string;
  /** frontend only: was this part cut to fit the token budget (never sent) */
  truncated?: boolean;
  /** frontend only: the notebook cell's id it came from ("Replace cell" targets it; never sent) */
  cellId?: string;
}

export interface IChatMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
  /** kept in saved chats so a reloaded chat shows what was attached */
  context?: IContextPart[];
  usage?: IUsage;
  model?: string;
  finish_reason?: string;
}

export interface ISampling {
  temperature?: number;
  max_tokens?: number;
  top_p?: number;
  top_k?: number;
  seed?: number;
}

export interface IChatRequest {
  messages: IChatMessage[];
  context?: IContextPart[];
  sampling?: ISampling;
  /** the user turn that carries the context: 'first' keeps it in place across a chat's turns */
  context_turn?: 'first' | 'last';
}

export interface IUsage {
  prompt_tokens?: number;
  completion_tokens?: number;
  tokens_per_second?: number;
  time_to_first_token?: number;
}

export interface IDone {
  finish_reason: 'stop' | 'length' | 'cancelled' | string;
  usage?: IUsage;
  truncated?: boolean;
}

export type ServerFrame =
  | { type: 'queued'; id: string; position: number }
  | { type: 'start'; id: string; model: string; notice?: string }
  | { type: 'delta'; id: string; text: string }
  | ({ type: 'done'; id: string } & IDone)
  | { type: 'error'; id: string | null; status: number; error: string };

export interface IEngineInfo {
  model: string;
  label?: string;
  architecture?: string;
  quantization?: string;
  context_length?: number;
  backend?: string;
  device?: string;
  stand_in?: boolean;
  vision?: boolean;
  /** the file loaded (llama.cpp): lets the picker select a listed model by its file */
  path?: string | null;
}

export interface IStatus {
  state: 'idle' | 'loading' | 'ready' | 'error';
  progress: number;
  model: IEngineInfo | null;
  loading?: string | null;
  error: string | null;
  hint: string | null;
  queue?: { running: number; waiting: number; concurrency: number };
  version?: string;
}

export interface IModelRow {
  name: string;
  available: boolean;
  stand_in: boolean;
  /** readable name (Ollama's name:tag, a file name); `name` is what loads it */
  label?: string;
  /** "catalogue", "ollama", "lm studio", "hf cache", "llama.cpp cache", "models folder", "stand-in" */
  source?: string;
  /** false for embedding models, lone projectors, unsupported architectures */
  chat?: boolean;
  minicpm?: boolean;
  format?: string;
  size_bytes?: number;
  vision?: boolean;
  notes?: string;
  local_path?: string | null;
}

export interface IModels {
  models: IModelRow[];
  current: string | null;
  current_label?: string | null;
}

export interface IChatSummary {
  id: string;
  title: string;
  updated: number | string;
  n_messages: number;
}

export interface ISavedChat {
  id: string;
  title: string;
  messages: IChatMessage[];
  updated?: number | string;
}
