// Symbols and colour for terminal output; plain text when piped (scripts parse it).
const tty = process.stdout.isTTY === true && !process.env['NO_COLOR'];

function paint(code: number, s: string): string {
  return tty ? `\x1b[${code}m${s}\x1b[0m` : s;
}

export const ui = {
  tty,
  ok: tty ? paint(32, '✅') : '[ok]',
  fail: tty ? paint(31, '❌') : '[fail]',
  warn: tty ? paint(33, '⚠️ ') : '[warn]',
  info: tty ? 'ℹ️ ' : '[info]',
  key: tty ? '🔑' : '[key]',
  run: tty ? '🚀' : '[run]',
  wait: tty ? '⌛' : '[wait]',
  green: (s: string) => paint(32, s),
  red: (s: string) => paint(31, s),
  yellow: (s: string) => paint(33, s),
  bold: (s: string) => paint(1, s),
};
