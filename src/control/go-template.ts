// The subset of Go's text/template that `kubectl get -o go-template=...` is used with here:
// text, {{.field.path}}, {{"string literal"}}, {{index .data "key.with.dots"}}, pipes into
// base64decode / base64encode, and the {{- -}} whitespace trims.
import { VeilError } from '../util/errors.js';

const FUNCS: Record<string, (v: unknown) => unknown> = {
  base64decode: (v) => Buffer.from(String(v), 'base64').toString('utf8'),
  base64encode: (v) => Buffer.from(String(v), 'utf8').toString('base64'),
};

function bad(template: string, why: string): VeilError {
  return new VeilError('BAD_TEMPLATE', `bad go-template '${template}': ${why}`, `e.g. -o go-template='{{.data.keys | base64decode}}'`);
}

export function renderGoTemplate(template: string, data: unknown): string {
  let out = '';
  let i = 0;
  while (i < template.length) {
    const open = template.indexOf('{{', i);
    if (open < 0) { out += template.slice(i); break; }
    let text = template.slice(i, open);
    let start = open + 2;
    if (template[start] === '-' && /\s/.test(template[start + 1] ?? '')) { text = text.trimEnd(); start++; }
    out += text;
    const close = findClose(template, start);
    if (close < 0) throw bad(template, 'unclosed action');
    let body = template.slice(start, close);
    i = close + 2;
    if (/\s-$/.test(body)) {
      body = body.slice(0, -1);
      while (i < template.length && /\s/.test(template[i]!)) i++;
    }
    out += printValue(evalPipeline(body.trim(), data, template));
  }
  return out;
}

/** The end of an action, skipping '}}' inside string literals. */
function findClose(t: string, from: number): number {
  for (let i = from; i < t.length - 1; i++) {
    if (t[i] === '"') {
      for (i++; i < t.length && t[i] !== '"'; i++) if (t[i] === '\\') i++;
    } else if (t[i] === '}' && t[i + 1] === '}') return i;
  }
  return -1;
}

function tokenize(s: string, template: string): string[] {
  const tokens: string[] = [];
  const re = /\s*("(?:[^"\\]|\\.)*"|\||[^\s|"]+)/gy;
  let m: RegExpExecArray | null;
  let end = 0;
  while ((m = re.exec(s))) { tokens.push(m[1]!); end = re.lastIndex; }
  if (s.slice(end).trim()) throw bad(template, `cannot read '${s}'`);
  return tokens;
}

function evalPipeline(body: string, data: unknown, template: string): unknown {
  const cmds: string[][] = [[]];
  for (const tok of tokenize(body, template)) {
    if (tok === '|') cmds.push([]);
    else cmds[cmds.length - 1]!.push(tok);
  }
  let value: unknown;
  cmds.forEach((cmd, n) => {
    if (!cmd.length) throw bad(template, 'empty command in pipeline');
    const [head, ...args] = cmd;
    const argv = args.map((a) => evalOperand(a, data, template));
    if (n > 0) argv.push(value);
    if (head === 'index') {
      const [obj, ...keys] = argv;
      value = keys.reduce((o: unknown, k) => (o !== null && typeof o === 'object' ? (o as Record<string, unknown>)[String(k)] : undefined), obj);
    } else if (FUNCS[head!]) {
      if (argv.length !== 1) throw bad(template, `${head} takes one argument`);
      value = FUNCS[head!]!(argv[0]);
    } else if (n === 0 && !args.length) {
      value = evalOperand(head!, data, template);
    } else {
      throw bad(template, `function '${head}' not defined (known: index, ${Object.keys(FUNCS).join(', ')})`);
    }
  });
  return value;
}

function evalOperand(tok: string, data: unknown, template: string): unknown {
  if (tok.startsWith('"')) return JSON.parse(tok) as string;
  if (/^-?\d+$/.test(tok)) return Number(tok);
  if (tok === '.') return data;
  if (tok.startsWith('.')) {
    let v: unknown = data;
    for (const key of tok.slice(1).split('.')) {
      v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined;
    }
    return v;
  }
  throw bad(template, `unknown operand '${tok}'`);
}

/** Go's fmt.Print of the values JSON can hold. */
function printValue(v: unknown): string {
  if (v === undefined) return '<no value>';
  if (v === null) return '<nil>';
  if (Array.isArray(v)) return `[${v.map(printValue).join(' ')}]`;
  if (typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `map[${Object.keys(o).sort().map((k) => `${k}:${printValue(o[k])}`).join(' ')}]`;
  }
  return String(v);
}
