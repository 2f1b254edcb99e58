import { qemuCommandLine } from '../src/backends/qmp/qemu-command';
import { parseDomainDocument, readSevDomain, withLaunchSession } from '../src/domain/sev-domain';

const DOMAIN = `<?xml version="1.0"?>
<!-- owner's template -->
<domain type="kvm">
  <name>a&amp;b</name>
  <vcpu current="2">8</vcpu>
  <memory unit="GiB">2</memory>
  <os>
    <type arch="x86_64" machine="pc-q35-8.2">hvm</type>
    <loader type="pflash" readonly="yes">fw/OVMF,amd.fd</loader>
    <kernel>/boot/vmlinuz</kernel>
    <cmdline><![CDATA[console=ttyS0 quiet]]></cmdline>
  </os>
  <cpu mode="host-passthrough"/>
  <launchSecurity type="sev" kernelHashes="yes">
    <policy>0x0007</policy>
    <dhCert>OLD</dhCert>
    <session>OLD</session>
  </launchSecurity>
</domain>
`;

describe('domain XML', () => {
  it('reads what a launch needs and replaces an earlier session, leaving the rest as written', () => {
    const doc = parseDomainDocument(DOMAIN);
    const d = readSevDomain(doc);
    expect(d).toMatchObject({
      name: 'a&b',
      vcpus: 2,
      memoryKiB: 2 * 1024 * 1024,
      machine: 'pc-q35-8.2',
      loader: { path: 'fw/OVMF,amd.fd', type: 'pflash' },
      kernel: '/boot/vmlinuz',
      cmdline: 'console=ttyS0 quiet',
      kernelHashes: true,
      policy: 7,
      cpu: { mode: 'host-passthrough' },
    });
    const xml = withLaunchSession(doc, 'R09ESA==', 'U0VTU0lPTg==');
    expect(xml).toContain("<!-- owner's template -->");
    expect(xml).toContain('<name>a&amp;b</name>');
    expect(xml).toContain('<cmdline><![CDATA[console=ttyS0 quiet]]></cmdline>');
    expect(xml).toContain('<policy>0x0007</policy>\n    <dhCert>R09ESA==</dhCert>\n    <session>U0VTU0lPTg==</session>\n  </launchSecurity>');
    expect(xml.match(/<dhCert>/g)).toHaveLength(1);
    expect(readSevDomain(parseDomainDocument(xml))).toMatchObject({ dhCert: 'R09ESA==', session: 'U0VTU0lPTg==' });
  });

  it('refuses a domain XML with a DOCTYPE (entity declarations could make the parser read host files)', () => {
    expect(() => parseDomainDocument('<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><domain><name>&x;</name></domain>')).toThrow(
      /the domain XML is not well-formed: DOCTYPE declarations are not supported at line 1, column 1/,
    );
  });

  it('builds the QEMU command line libvirt would for the launch-relevant parts', () => {
    const d = readSevDomain(parseDomainDocument(DOMAIN));
    const argv = qemuCommandLine({ domain: d, xmlDir: '/xml', dhCertFile: '/run/godh.b64', sessionFile: '/run/s,1.b64', qmpSocket: '/run/qmp.sock' });
    expect(argv.join(' ')).toBe(
      '-name guest=a&b -machine pc-q35-8.2,confidential-guest-support=sev0 -accel kvm ' +
        '-object sev-guest,id=sev0,policy=0x7,dh-cert-file=/run/godh.b64,session-file=/run/s,,1.b64,kernel-hashes=on ' +
        '-drive if=pflash,format=raw,unit=0,file=/xml/fw/OVMF,,amd.fd,readonly=on -smp 2 -m 2048M -cpu host -kernel /boot/vmlinuz ' +
        '-append console=ttyS0 quiet -S -qmp unix:/run/qmp.sock,server=on,wait=off -nodefaults -display none',
    );
  });
});
