import type { XmlDocument, XmlNode } from './dom';

// '\r' as a reference: a literal one would become '\n' when read again (line-end normalisation); '\n' and '\t' in
// attributes likewise, or they would come back as spaces (attribute-value normalisation).
const escText = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/\r/g, '&#13;');
const escAttr = (s: string) => escText(s).replace(/'/g, '&apos;').replace(/\n/g, '&#10;').replace(/\t/g, '&#9;');

function node(n: XmlNode): string {
  switch (n.type) {
    case 'text':
      return escText(n.value);
    case 'cdata':
      return `<![CDATA[${n.value}]]>`;
    case 'comment':
      return `<!--${n.value}-->`;
    case 'pi':
      return `<?${n.value}?>`;
    case 'element': {
      // Single quotes, as libvirt writes its XML.
      const attrs = n.attrs.map(([k, v]) => ` ${k}='${escAttr(v)}'`).join('');
      if (n.children.length === 0) return `<${n.name}${attrs}/>`;
      return `<${n.name}${attrs}>${n.children.map(node).join('')}</${n.name}>`;
    }
  }
}

/** The document as parsed (modulo quoting, escaping and a dropped BOM), with whatever the caller changed. */
export function serializeXml(doc: XmlDocument): string {
  return [...doc.before, doc.root, ...doc.after].map(node).join('');
}
