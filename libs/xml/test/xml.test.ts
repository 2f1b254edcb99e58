import { attr, childElement, childElements, element, leadingText, parseXml, select, serializeXml, textOf, XmlError } from '@kb/xml';

describe('parseXml and serializeXml', () => {
  it('round-trips comments, CDATA, entities and character references', () => {
    const doc = parseXml('<a x="1 &lt; 2" y=\'&#x41;&#66;\'><!-- c --><b>t &amp; &gt;</b><![CDATA[<raw>]]><?pi x?></a>');
    expect(doc.root.attrs).toEqual([
      ['x', '1 < 2'],
      ['y', 'AB'],
    ]);
    expect(serializeXml(doc)).toBe("<a x='1 &lt; 2' y='AB'><!-- c --><b>t &amp; &gt;</b><![CDATA[<raw>]]><?pi x?></a>");
  });

  it('keeps the prolog and epilog, drops a BOM, and writes an added element', () => {
    const doc = parseXml('\ufeff<?xml version="1.0"?>\n<!-- top -->\n<d><ls>\n  <policy>1</policy>\n</ls></d>\n<!-- end -->\n');
    childElement(doc.root, 'ls')!.children.push(element('session', 'a<b'), element('empty'));
    expect(serializeXml(doc)).toBe(
      '<?xml version="1.0"?>\n<!-- top -->\n<d><ls>\n  <policy>1</policy>\n<session>a&lt;b</session><empty/></ls></d>\n<!-- end -->\n',
    );
  });

  it('normalises line ends and attribute whitespace as XML (and lxml) do, and writes them back so they survive', () => {
    const doc = parseXml('<a b="x\r\ny\tz" c="&#10;&#9;&#13;">1\r\n2\r3&#13;</a>');
    expect(attr(doc.root, 'b')).toBe('x y z');
    expect(attr(doc.root, 'c')).toBe('\n\t\r');
    expect(textOf(doc.root)).toBe('1\n2\n3\r');
    const again = parseXml(serializeXml(doc));
    expect(again.root).toEqual(doc.root);
  });

  it('keeps namespace prefixes in names', () => {
    const doc = parseXml("<domain xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'><qemu:commandline/></domain>");
    expect(childElements(doc.root).map((e) => e.name)).toEqual(['qemu:commandline']);
  });

  it.each([
    ['<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><d>&x;</d>', /DOCTYPE declarations are not supported/],
    ['<!DOCTYPE d [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><d>&b;</d>', /DOCTYPE declarations are not supported/],
    ['<!doctype d><d/>', /DOCTYPE declarations are not supported/],
    ['<?xml version="1.0"?><!DOCTYPE domain SYSTEM "domain.dtd"><domain/>', /DOCTYPE declarations are not supported/],
    ['<a>&x;</a>', /unknown entity '&x;'/],
    ['<a>AT&T</a>', /unterminated entity '&T'/],
    ['<a><b></a>', /<\/a> closes <b>/],
    ['<a x="1" x="2"/>', /duplicate attribute 'x'/],
    ['<a x="1"y="2"/>', /expected whitespace before an attribute/],
    ['<a x="<"/>', /'<' in the value of attribute 'x'/],
    ['<a x=1/>', /expected a quoted attribute value/],
    ['<a/><b/>', /content after the root element/],
    ['text<a/>', /text outside the root element/],
    ['<!-- only a comment -->', /no root element/],
    ['<a>&#0;</a>', /invalid character reference/],
    ['<a>&#1;</a>', /invalid character reference/],
    ['<a>&#xD800;</a>', /invalid character reference/],
    ['<a>&#x110000;</a>', /invalid character reference/],
    ['<a><!-- x</a>', /unterminated comment/],
    ['<a><![CDATA[x</a>', /unterminated CDATA section/],
    ['<a>', /element <a> is not closed/],
  ])('refuses %s', (xml, message) => {
    expect(() => parseXml(xml)).toThrow(message);
  });

  it('throws an XmlError that says where', () => {
    let err: unknown;
    try {
      parseXml('<a>\r\n  <b>&nope;</b>\n</a>');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(XmlError);
    expect(err).toMatchObject({
      name: 'XmlError',
      reason: "unknown entity '&nope;'",
      line: 2,
      column: 6,
      message: "unknown entity '&nope;' at line 2, column 6",
    });
  });
});

describe('queries', () => {
  const CAPS = `<capabilities>
  <host>
    <cpu>
      <model>EPYC-Milan</model>
      <signature family='25' model='1' stepping='1'/>
    </cpu>
  </host>
</capabilities>`;
  const DOMAIN = `<domain type='kvm'>
  <!-- a comment, as virsh may print -->
  <os>
    <loader type='rom'>/fw/OVMF&amp;.fd</loader>
    <kernel><![CDATA[/boot/vm]]>linuz<!-- c -->IGNORED<b/>tail</kernel>
    <initrd>/boot/a<?pi?>b</initrd>
    <cmdline/>
  </os>
  <launchSecurity type='sev' kernelHashes='yes'><dhCert>A</dhCert><session>S</session></launchSecurity>
  <launchSecurity type='sev-snp'/>
</domain>`;
  const domain = parseXml(DOMAIN).root;

  it('select follows absolute paths with attribute tests, like lxml xpath', () => {
    expect(select(domain, ['domain', 'os', 'loader'])).toHaveLength(1);
    const sev = { name: 'launchSecurity', attr: ['type', 'sev'] as [string, string] };
    expect(select(domain, ['domain', 'launchSecurity'])).toHaveLength(2);
    expect(select(domain, ['domain', sev]).map((e) => attr(e, 'kernelHashes'))).toEqual(['yes']);
    expect(select(domain, ['domain', sev, 'session']).map(textOf)).toEqual(['S']);
    expect(select(domain, ['domain', 'os', 'nvram'])).toEqual([]);
    expect(select(domain, ['capabilities', 'host'])).toEqual([]);
    expect(select(domain, [])).toEqual([]);
    const sig = select(parseXml(CAPS).root, ['capabilities', 'host', 'cpu', 'signature']);
    expect(sig.map((s) => [attr(s, 'family'), attr(s, 'model'), attr(s, 'stepping')])).toEqual([['25', '1', '1']]);
  });

  it("leadingText is lxml's .text: text and CDATA up to the first child element, comment or PI ('' for None)", () => {
    const os = childElement(domain, 'os')!;
    const text = (n: string) => leadingText(childElement(os, n)!);
    expect(text('loader')).toBe('/fw/OVMF&.fd');
    expect(text('kernel')).toBe('/boot/vmlinuz');
    expect(text('initrd')).toBe('/boot/a');
    expect(text('cmdline')).toBe('');
    expect(leadingText(domain)).toBe('\n  ');
  });

  it('textOf joins all direct character data; childElement(s) skip other nodes', () => {
    const kernel = childElement(childElement(domain, 'os')!, 'kernel')!;
    expect(textOf(kernel)).toBe('/boot/vmlinuzIGNOREDtail');
    expect(childElements(domain).map((e) => e.name)).toEqual(['os', 'launchSecurity', 'launchSecurity']);
    expect(childElement(domain, 'devices')).toBeUndefined();
    expect(attr(domain, 'id')).toBeUndefined();
  });
});
