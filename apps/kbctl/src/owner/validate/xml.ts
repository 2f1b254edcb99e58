/**
 * Just enough XML for libvirt's domain and capabilities documents (what virt-qemu-sev-validate reads with lxml):
 * elements, attributes, text, comments, CDATA, processing instructions and a DOCTYPE without an internal subset.
 * Namespaces are not resolved: names keep their prefix, and the paths libvirt's tool queries have none.
 */
export interface XmlElement {
  name: string;
  attrs: Record<string, string>;
  children: XmlElement[];
  /** Text before the first child element, like lxml's `.text` ('' where lxml has None). */
  text: string;
}

export class XmlError extends Error {}

const ENTITIES: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" };

function decode(s: string, at: number): string {
  return s.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (_m, e: string) => {
    if (e.startsWith('#x')) return String.fromCodePoint(parseInt(e.slice(2), 16));
    if (e.startsWith('#')) return String.fromCodePoint(parseInt(e.slice(1), 10));
    const v = ENTITIES[e];
    if (v === undefined) throw new XmlError(`unknown entity &${e}; near offset ${at}`);
    return v;
  });
}

const NAME = /[A-Za-z_:][-A-Za-z0-9_:.]*/y;

export function parseXml(src: string): XmlElement {
  let i = 0;
  const fail = (why: string): never => {
    throw new XmlError(`malformed XML at offset ${i}: ${why}`);
  };
  const skipMisc = () => {
    for (;;) {
      while (i < src.length && /\s/.test(src[i]!)) i++;
      if (src.startsWith('<?', i)) {
        const end = src.indexOf('?>', i);
        if (end < 0) fail('unterminated processing instruction');
        i = end + 2;
      } else if (src.startsWith('<!--', i)) {
        const end = src.indexOf('-->', i);
        if (end < 0) fail('unterminated comment');
        i = end + 3;
      } else if (src.startsWith('<!DOCTYPE', i)) {
        const end = src.indexOf('>', i);
        if (end < 0) fail('unterminated DOCTYPE');
        i = end + 1;
      } else return;
    }
  };
  const name = (): string => {
    NAME.lastIndex = i;
    const m = NAME.exec(src);
    if (!m) return fail('expected a name');
    i += m[0].length;
    return m[0];
  };
  const element = (): XmlElement => {
    if (src[i] !== '<') fail('expected an element');
    i++;
    const el: XmlElement = { name: name(), attrs: {}, children: [], text: '' };
    for (;;) {
      while (/\s/.test(src[i] ?? '')) i++;
      if (src.startsWith('/>', i)) {
        i += 2;
        return el;
      }
      if (src[i] === '>') {
        i++;
        break;
      }
      const attr = name();
      while (/\s/.test(src[i] ?? '')) i++;
      if (src[i] !== '=') fail(`expected = after attribute ${attr}`);
      i++;
      while (/\s/.test(src[i] ?? '')) i++;
      const q = src[i];
      if (q !== '"' && q !== "'") return fail(`expected a quoted value for attribute ${attr}`);
      const end = src.indexOf(q, i + 1);
      if (end < 0) fail('unterminated attribute value');
      el.attrs[attr] = decode(src.slice(i + 1, end), i);
      i = end + 1;
    }
    let textDone = false;
    for (;;) {
      if (i >= src.length) fail(`element <${el.name}> is not closed`);
      if (src.startsWith('</', i)) {
        i += 2;
        const closing = name();
        if (closing !== el.name) fail(`</${closing}> closes <${el.name}>`);
        while (/\s/.test(src[i] ?? '')) i++;
        if (src[i] !== '>') fail('expected >');
        i++;
        return el;
      }
      if (src.startsWith('<!--', i)) {
        const end = src.indexOf('-->', i);
        if (end < 0) fail('unterminated comment');
        i = end + 3;
      } else if (src.startsWith('<![CDATA[', i)) {
        const end = src.indexOf(']]>', i);
        if (end < 0) fail('unterminated CDATA');
        if (!textDone) el.text += src.slice(i + 9, end);
        i = end + 3;
      } else if (src.startsWith('<?', i)) {
        const end = src.indexOf('?>', i);
        if (end < 0) fail('unterminated processing instruction');
        i = end + 2;
      } else if (src[i] === '<') {
        el.children.push(element());
        textDone = true;
      } else {
        const end = src.indexOf('<', i);
        const raw = src.slice(i, end < 0 ? src.length : end);
        if (!textDone) el.text += decode(raw, i);
        i += raw.length;
      }
    }
  };
  skipMisc();
  const root = element();
  skipMisc();
  if (i !== src.length) fail('content after the root element');
  return root;
}

/**
 * The elements at an absolute path such as ['domain', 'os', 'loader'] (lxml `doc.xpath('/domain/os/loader')`); a
 * step may carry an attribute test, e.g. { name: 'launchSecurity', attr: ['type', 'sev'] }.
 */
export type Step = string | { name: string; attr: [string, string] };

export function select(root: XmlElement, path: Step[]): XmlElement[] {
  const match = (el: XmlElement, s: Step) => (typeof s === 'string' ? el.name === s : el.name === s.name && el.attrs[s.attr[0]] === s.attr[1]);
  const [first, ...rest] = path;
  if (first === undefined || !match(root, first)) return [];
  let current = [root];
  for (const s of rest) current = current.flatMap((el) => el.children.filter((c) => match(c, s)));
  return current;
}
