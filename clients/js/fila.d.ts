// fila.d.ts — types of fila.js, the browser SDK (docs/api.md is the contract).

export type JobStatus = 'queued' | 'starting' | 'running' | 'completed' | 'failed' | 'cancelled';

export declare const TERMINAL: readonly ['completed', 'failed', 'cancelled'];
export declare const ACTIVE: readonly ['queued', 'starting', 'running'];
export declare function isTerminal(statusOrJob: JobStatus | Job | string): boolean;

export type ErrorCode =
  | 'invalid_json' | 'unauthorized' | 'insufficient_credits' | 'forbidden' | 'not_found'
  | 'active_job_exists' | 'job_finished' | 'too_large' | 'unsupported_media_type'
  | 'validation_failed' | 'rate_limited' | 'unavailable' | 'network_error'
  | (string & {});

export type JobErrorCode =
  | 'provider_error' | 'provider_rejected' | 'timeout' | 'cancelled' | 'session_left' | 'admin'
  | (string & {});

export interface JobOutput { url: string; type: string }

export interface Job {
  id: string;
  user_id: string;
  tool: string;
  variant: string | null;
  status: JobStatus;
  /** 1-based place in the global FIFO; null when not queued. */
  position: number | null;
  inputs: Record<string, string | number>;
  outputs: JobOutput[];
  error: { code: JobErrorCode; message: string } | null;
  cost: number;
  credits_charged: boolean;
  credits_refunded: boolean;
  provider_task_id: string | null;
  session_id: string | null;
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  updated_at: string;
  /** Seconds until the job should start; only on queued jobs in events. */
  eta_s?: number;
}

export interface ToolInput {
  name: string;
  type: 'image' | 'video' | 'text' | 'number' | 'choice';
  required: boolean;
  choices?: string[];
  min?: number;
  max?: number;
}

export interface Tool {
  name: string;
  title: string;
  cost: number;
  variants: string[];
  inputs: ToolInput[];
}

export interface Upload { id: string; type: string; size: number; sha256: string }

export interface Me { user_id: string; credits: number; active_job: Job | null }

export interface LedgerEntry {
  id: string;
  job_id: string | null;
  kind: 'grant' | 'charge' | 'refund';
  /** Signed: a charge is negative. */
  amount: number;
  balance_after: number;
  at: string;
}

export interface AdminQueue {
  slots: { total: number; used: number };
  active: Job[];
  /** The queue in order; only its first `limit` jobs when a limit is given. */
  queued: Job[];
  /** How many jobs wait in all (present when a limit was given). */
  queued_total?: number;
}

export interface ToolStats {
  completed: number;
  failed: number;
  cancelled: number;
  timeout: number;
  wait_p50_s: number | null;
  run_p50_s: number | null;
}

export interface AdminStats {
  tools: Record<string, ToolStats>;
  /** Newest failed jobs of the window, when the server gives them. */
  recent_failures?: Job[];
}

/** A provider account, as GET /v1/admin/accounts shows it. */
export interface Account {
  name: string;
  base_url: string;
  slots: number;
  /** Slots held now on this account. */
  used: number;
  /** false while the account is down (its wallet, its key). */
  up: boolean;
  down_reason?: string;
  /** false when its provider did not answer the last call at all. */
  reachable: boolean;
  unreachable_reason?: string;
  remain_coins?: number;
  task_count?: number;
}

/** Anything shaped like the browser's EventSource (constructor + events). */
export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((ev: any) => any) | null;
  onerror: ((ev: any) => any) | null;
  addEventListener(type: string, listener: (ev: { data: string; lastEventId: string }) => void): void;
  close(): void;
}
export type EventSourceCtor = new (url: string) => EventSourceLike;

export interface FilaOptions {
  /** Origin (and path prefix) of fila; '' means the page's own origin. */
  baseUrl?: string;
  /** A user's (or admin's) bearer token. */
  token?: string | null;
  /** EventSource implementation; defaults to globalThis.EventSource (absent in Node 20). */
  EventSource?: EventSourceCtor;
  /** fetch implementation; defaults to globalThis.fetch. */
  fetch?: typeof fetch;
}

export interface SubscribeOptions {
  /** Called when the stream gives up for good (e.g. 401, 404). */
  onError?: (err: FilaError) => void;
  /** Called each time a connection opens. */
  onOpen?: () => void;
  /** Start after this event id (skip what came before). */
  after?: string | number;
}

export type Uploadable = Blob | ArrayBuffer | ArrayBufferView;

export interface CreateJobOptions {
  tool: string;
  variant?: string;
  /** Blob/File values are uploaded first and replaced by their upload ids. */
  inputs?: Record<string, string | number | Uploadable>;
  sessionId?: string;
  idempotencyKey?: string;
}

export declare class FilaError extends Error {
  constructor(status: number, code: ErrorCode, message?: string, details?: Record<string, any>);
  /** HTTP status; 0 when no answer arrived. */
  status: number;
  /** docs/api.md's error code, e.g. 'active_job_exists'. */
  code: ErrorCode;
  /** docs/api.md's details, e.g. {job_id, tool, status} or {balance, cost} or {fields}. */
  details?: Record<string, any>;
}

export declare class Fila {
  constructor(options?: FilaOptions);
  baseUrl: string;
  token: string | null;
  setToken(token: string | null): void;

  tools(): Promise<Tool[]>;
  uploadFile(file: Uploadable, options?: { filename?: string; type?: string }): Promise<Upload>;
  createJob(options: CreateJobOptions): Promise<Job>;
  job(jobOrId: Job | string): Promise<Job>;
  jobs(query?: { status?: JobStatus; tool?: string; limit?: number; cursor?: string }): Promise<{ jobs: Job[]; next_cursor: string | null }>;
  cancel(jobOrId: Job | string): Promise<Job>;
  me(): Promise<Me>;
  activeJob(): Promise<Job | null>;
  ledger(): Promise<LedgerEntry[]>;
  leaveSession(sessionId: string): Promise<null>;

  /** Live changes of one job; closes itself after the terminal status. Returns unsubscribe. */
  subscribe(jobOrId: Job | string, onChange: (job: Job) => void, options?: SubscribeOptions): () => void;
  /** Live changes of all the caller's jobs. Returns unsubscribe. */
  subscribeAll(onChange: (job: Job) => void, options?: SubscribeOptions): () => void;
  /** Cancels the session's waiting jobs when the page goes away. Returns unregister. */
  leaveOnUnload(sessionId: string): () => void;

  /** The queue; `limit` lists only its first jobs (queued_total counts all). */
  adminQueue(options?: { limit?: number }): Promise<AdminQueue>;
  adminStats(hours?: number): Promise<AdminStats>;
  adminAccounts(): Promise<{ accounts: Account[] }>;
  adminGrant(userId: string, amount: number, reason?: string): Promise<{ balance: number }>;
  adminCancel(jobOrId: Job | string): Promise<Job>;
}

export default Fila;
