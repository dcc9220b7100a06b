// Structured logs: one JSON object per line (for files and scripts), a short human line on a TTY.

export type Level = 'debug' | 'info' | 'warn' | 'error';

export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  child(fields: Record<string, unknown>): Logger;
}

export function createLogger(base: Record<string, unknown> = {}, out: NodeJS.WritableStream = process.stdout): Logger {
  const tty = (out as NodeJS.WriteStream).isTTY === true;
  const debugOn = Boolean(process.env['VEIL_DEBUG']);
  const emit = (level: Level, msg: string, fields?: Record<string, unknown>) => {
    if (level === 'debug' && !debugOn) return;
    const time = new Date().toISOString();
    if (tty) {
      const extra = fields && Object.keys(fields).length ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
      out.write(`${time.slice(11, 23)} ${level.toUpperCase().padEnd(5)} ${msg}${extra}\n`);
    } else {
      out.write(JSON.stringify({ time, level, msg, ...base, ...fields }) + '\n');
    }
  };
  return {
    debug: (m, f) => emit('debug', m, f),
    info: (m, f) => emit('info', m, f),
    warn: (m, f) => emit('warn', m, f),
    error: (m, f) => emit('error', m, f),
    child: (f) => createLogger({ ...base, ...f }, out),
  };
}
