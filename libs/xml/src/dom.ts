/**
 * A tiny DOM for libvirt's XML documents (domain, capabilities): every node is kept, in order, so a document can be
 * read and written back with a few elements changed. Namespaces are not resolved: names keep their prefix.
 */
export interface XmlElement {
  type: 'element';
  name: string;
  /** in document order, as written back */
  attrs: [string, string][];
  children: XmlNode[];
}
export type XmlNode =
  XmlElement | { type: 'text'; value: string } | { type: 'cdata'; value: string } | { type: 'comment'; value: string } | { type: 'pi'; value: string };

export interface XmlDocument {
  /** XML declaration, comments and whitespace before the root element */
  before: XmlNode[];
  root: XmlElement;
  after: XmlNode[];
}

export function attr(el: XmlElement, name: string): string | undefined {
  return el.attrs.find(([k]) => k === name)?.[1];
}

export function childElements(el: XmlElement, name?: string): XmlElement[] {
  return el.children.filter((c): c is XmlElement => c.type === 'element' && (name === undefined || c.name === name));
}

export function childElement(el: XmlElement, name: string): XmlElement | undefined {
  return childElements(el, name)[0];
}

/** All character data of an element (its text and CDATA children, not descendants'). */
export function textOf(el: XmlElement): string {
  return el.children.map((c) => (c.type === 'text' || c.type === 'cdata' ? c.value : '')).join('');
}

/**
 * lxml's `.text`: the character data before the first child element, comment or processing instruction ('' where
 * lxml has None). kbctl reads paths with it, as virt-qemu-sev-validate does, so both see the same file names.
 */
export function leadingText(el: XmlElement): string {
  let s = '';
  for (const c of el.children) {
    if (c.type !== 'text' && c.type !== 'cdata') break;
    s += c.value;
  }
  return s;
}

/**
 * The elements at an absolute path, e.g. ['domain', 'os', 'loader'] for lxml's `doc.xpath('/domain/os/loader')`; a
 * step may test an attribute: { name: 'launchSecurity', attr: ['type', 'sev'] } is `launchSecurity[@type='sev']`.
 */
export type Step = string | { name: string; attr: [string, string] };

export function select(root: XmlElement, path: Step[]): XmlElement[] {
  const match = (el: XmlElement, s: Step) => (typeof s === 'string' ? el.name === s : el.name === s.name && attr(el, s.attr[0]) === s.attr[1]);
  const [first, ...rest] = path;
  if (first === undefined || !match(root, first)) return [];
  let current = [root];
  for (const s of rest) current = current.flatMap((el) => childElements(el).filter((c) => match(c, s)));
  return current;
}

/** A new element with optional text, for adding to a parsed document. */
export function element(name: string, text?: string): XmlElement {
  return { type: 'element', name, attrs: [], children: text === undefined ? [] : [{ type: 'text', value: text }] };
}
