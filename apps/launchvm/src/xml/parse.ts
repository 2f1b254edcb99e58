import type { XmlDocument, XmlElement, XmlNode } from './node';

export class XmlSyntaxError extends Error {
  override readonly name = 'XmlSyntaxError';
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;
const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

/**
 * A strict, non-validating parser for the XML subset libvirt writes and reads: elements, attributes, text with the
 * predefined and numeric entities, CDATA, comments and processing instructions. A DOCTYPE is refused: libvirt does
 * not use one and entity declarations are the classic way to make a parser read files it should not.
 */
export function parseXml(src: string): XmlDocument {
  let pos = 0;
  const where = () => {
    const before = src.slice(0, pos);
    const line = before.split('\n').length;
    return `line ${line}, column ${pos - before.lastIndexOf('\n')}`;
  };
  const fail = (msg: string): never => {
    throw new XmlSyntaxError(`${msg} at ${where()}`);
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
    while (pos < src.length && /\s/.test(src[pos]!)) pos++;
  };
  const decode = (raw: string): string =>
    raw.replace(/&([^;&\s]*);?/g, (whole, ent: string) => {
      if (!whole.endsWith(';')) fail(`unterminated entity '&${ent}'`);
      if (ent in ENTITIES) return ENTITIES[ent]!;
      const m = /^#(x[0-9a-fA-F]+|[0-9]+)$/.exec(ent);
      if (!m) return fail(`unknown entity '&${ent};'`);
      const code = m[1]!.startsWith('x') ? parseInt(m[1]!.slice(1), 16) : parseInt(m[1]!, 10);
      if (code > 0x10ffff || code === 0) fail(`invalid character reference '&${ent};'`);
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
    if (startsWith('<!DOCTYPE') || startsWith('<!doctype')) fail('DOCTYPE declarations are not supported');
    return undefined;
  };
  const element = (): XmlElement => {
    expect('<');
    const el: XmlElement = { type: 'element', name: name(), attrs: [], children: [] };
    for (;;) {
      const hadSpace = pos < src.length && /\s/.test(src[pos]!);
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
      const key = name();
      skipSpace();
      expect('=');
      skipSpace();
      const q = src[pos];
      if (q !== '"' && q !== "'") fail('expected a quoted attribute value');
      pos++;
      const raw = until(q!, 'attribute value');
      if (raw.includes('<')) fail(`'<' in the value of attribute '${key}'`);
      if (el.attrs.some(([k]) => k === key)) fail(`duplicate attribute '${key}'`);
      el.attrs.push([key, decode(raw)]);
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
      const next = src.indexOf('<', pos);
      const raw = src.slice(pos, next < 0 ? src.length : next);
      pos += raw.length;
      el.children.push({ type: 'text', value: decode(raw) });
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
