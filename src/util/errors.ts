// Typed errors: every failure a user can meet carries a stable code and says what to do next.

export class VeilError extends Error {
  readonly code: string;
  readonly hint: string | undefined;

  constructor(code: string, message: string, hint?: string) {
    super(message);
    this.name = 'VeilError';
    this.code = code;
    this.hint = hint;
  }

  /** One line for a terminal: the problem, then what to do. */
  describe(): string {
    return this.hint ? `${this.message}: ${this.hint}` : this.message;
  }
}

export function isVeilError(e: unknown): e is VeilError {
  return e instanceof VeilError;
}

/** The message of anything thrown, for logs and status lines. */
export function errorMessage(e: unknown): string {
  if (e instanceof VeilError) return e.describe();
  if (e instanceof Error) return e.message;
  return String(e);
}
