import type { XmlDocument, XmlElement, XmlNode } from './dom';

/** Not well-formed, or outside the subset parsed here; `line` and `column` (1-based) say where. */
export class XmlError extends Error {
  override readonly name = 'XmlError';
  constructor(
    readonly reason: string,
    readonly line: number,
    readonly column: number,
  ) {
    super(`${reason} at line ${line}, column ${column}`);
  }
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };
const isSpace = (c: string | undefined) => c === ' ' || c === '\t' || c === '\n' || c === '\r';
// XML 1.0 `Char`: a reference to anything else (NUL, other C0 controls, a lone surrogate) is not well-formed.
const isChar = (c: number) =>
  c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) || (c >= 0xe000 && c <= 0xfffd) || (c >= 0x10000 && c <= 0x10ffff);

/**
 * A strict, non-validating parser for the XML libvirt writes and reads: elements, attributes, text with the
 * predefined and numeric entities, CDATA, comments and processing instructions, with XML's line-end and
 * attribute-value normalisation (as libxml2, hence lxml and libvirt, apply them). Any DOCTYPE is refused: libvirt
 * never writes one, and entity declarations are the classic way to make a parser read files or blow up in memory.
 */
export function parseXml(input: string): XmlDocument {
  const src = input.replace(/\r\n?/g, '\n');
  let pos = 0;
  const fail = (reason: string, at = pos): never => {
    const before = src.slice(0, at);
    throw new XmlError(reason, before.split('\n').length, at - before.lastIndexOf('\n'));
  };
  const startsWith = (s: string) => src.startsWith(s, pos);
  const expect = (s: string) => {
    if (!startsWith(s)) fail(`expected '${s}'`);
    pos += s.length;
  };
  const name = (): string => {
    NAME.lastIndex = pos;
    const m = NAME.exec(src);
    if (!m) return fail('expected a name');
    pos += m[0].length;
    return m[0];
  };
  const skipSpace = () => {
    while (isSpace(src[pos])) pos++;
  };
  const decode = (raw: string, at: number): string =>
    raw.replace(/&([^;&\s]*);?/g, (whole, ent: string, i: number) => {
      if (!whole.endsWith(';')) fail(`unterminated entity '&${ent}'`, at + i);
      if (ent in ENTITIES) return ENTITIES[ent]!;
      const m = /^#(x[0-9a-fA-F]+|[0-9]+)$/.exec(ent);
      if (!m) return fail(`unknown entity '&${ent};'`, at + i);
      const code = m[1]!.startsWith('x') ? parseInt(m[1]!.slice(1), 16) : parseInt(m[1]!, 10);
      if (!isChar(code)) fail(`invalid character reference '&${ent};'`, at + i);
      return String.fromCodePoint(code);
    });
  const until = (end: string, what: string): string => {
    const i = src.indexOf(end, pos);
    if (i < 0) fail(`unterminated ${what}`);
    const s = src.slice(pos, i);
    pos = i + end.length;
    return s;
  };
  const misc = (): XmlNode | undefined => {
    if (startsWith('<!--')) {
      pos += 4;
      return { type: 'comment', value: until('-->', 'comment') };
    }
    if (startsWith('<?')) {
      pos += 2;
      return { type: 'pi', value: until('?>', 'processing instruction') };
    }
    if (/^<!doctype/i.test(src.slice(pos, pos + 9))) fail('DOCTYPE declarations are not supported');
    return undefined;
  };
  const element = (): XmlElement => {
    expect('<');
    const el: XmlElement = { type: 'element', name: name(), attrs: [], children: [] };
    for (;;) {
      const hadSpace = isSpace(src[pos]);
      skipSpace();
      if (startsWith('/>')) {
        pos += 2;
        return el;
      }
      if (startsWith('>')) {
        pos++;
        break;
      }
      if (!hadSpace) fail('expected whitespace before an attribute');
      const keyAt = pos;
      const key = name();
      skipSpace();
      expect('=');
      skipSpace();
      const q = src[pos];
      if (q !== '"' && q !== "'") fail('expected a quoted attribute value');
      const at = ++pos;
      const raw = until(q!, 'attribute value');
      if (raw.includes('<')) fail(`'<' in the value of attribute '${key}'`, at + raw.indexOf('<'));
      if (el.attrs.some(([k]) => k === key)) fail(`duplicate attribute '${key}'`, keyAt);
      // Attribute-value normalisation: literal whitespace becomes a space, character references stay as written.
      el.attrs.push([key, decode(raw.replace(/[\t\n]/g, ' '), at)]);
    }
    for (;;) {
      if (pos >= src.length) fail(`element <${el.name}> is not closed`);
      if (startsWith('</')) {
        pos += 2;
        const end = name();
        if (end !== el.name) fail(`</${end}> closes <${el.name}>`);
        skipSpace();
        expect('>');
        return el;
      }
      if (startsWith('<![CDATA[')) {
        pos += 9;
        el.children.push({ type: 'cdata', value: until(']]>', 'CDATA section') });
        continue;
      }
      const m = misc();
      if (m) {
        el.children.push(m);
        continue;
      }
      if (startsWith('<')) {
        el.children.push(element());
        continue;
      }
      const at = pos;
      const next = src.indexOf('<', pos);
      const raw = src.slice(pos, next < 0 ? src.length : next);
      pos += raw.length;
      el.children.push({ type: 'text', value: decode(raw, at) });
    }
  };
  const prolog = (): XmlNode[] => {
    const nodes: XmlNode[] = [];
    for (;;) {
      const start = pos;
      skipSpace();
      if (pos > start) nodes.push({ type: 'text', value: src.slice(start, pos) });
      const m = misc();
      if (!m) return nodes;
      nodes.push(m);
    }
  };
  if (src.charCodeAt(0) === 0xfeff) pos = 1;
  const before = prolog();
  if (!startsWith('<')) fail(pos >= src.length ? 'no root element' : 'text outside the root element');
  const root = element();
  const after = prolog();
  if (pos < src.length) fail('content after the root element');
  return { before, root, after };
}
