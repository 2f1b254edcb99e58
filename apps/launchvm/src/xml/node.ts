/** A tiny DOM for libvirt domain XML: enough to read it and write it back with two elements added. */
export interface XmlElement {
  type: 'element';
  name: string;
  attrs: [string, string][];
  children: XmlNode[];
}
export type XmlNode =
  | XmlElement
  | { type: 'text'; value: string }
  | { type: 'cdata'; value: string }
  | { type: 'comment'; value: string }
  | { type: 'pi'; value: string };

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

/** Character data of an element (text and CDATA children, not descendants). */
export function textOf(el: XmlElement): string {
  return el.children.map((c) => (c.type === 'text' || c.type === 'cdata' ? c.value : '')).join('');
}

export function element(name: string, text?: string): XmlElement {
  return { type: 'element', name, attrs: [], children: text === undefined ? [] : [{ type: 'text', value: text }] };
}
