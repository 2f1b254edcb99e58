import { exitCodeTable } from '../exit-codes';

export const HELP = `launchvm — launch an AMD SEV / SEV-ES guest with its secrets from the key broker (LaunchVM.py's flow)

Usage: launchvm [options] DOMAIN.xml --secret GUID,TYPE,ID[,FORMAT] ...
       launchvm [backend options] DOMAIN.xml      (a domain whose <launchSecurity> has <attestation>)

DOMAIN.xml is a libvirt domain with <launchSecurity type='sev'> (<policy>; <os><loader>; for a direct kernel boot
<kernel>/<initrd>/<cmdline> with kernelHashes='yes'). Steps, each printed with its duration: compute the expected
launch digest, GetBundle, put <dhCert>/<session> into the XML, define, start paused, read the launch measurement and
platform info, GetSecret, inject the secret, resume. If a step fails after the guest was defined, the guest is
destroyed and undefined, the failed step and the reason are printed, and the exit code says what failed.

Attestation service (README "Launching a guest"): when <launchSecurity> holds
<attestation vmid='UUID' service='https://HOST:44446/sev/v1'/>, the owner registered the VM there (kbctl vm register)
and nothing else is given: the steps become firmware (SHA-256 of the <loader> file), launch (POST /vm/UUID/launch
with the host's PDH, chain and CPU), session (also <policy> from the service), define, start, measure, validate
(POST /vm/UUID/validate), inject, resume. --secret, --digest, --cpu-*, --broker and --description do not apply.
  --tls-ca FILE             trust this CA (PEM) for an https:// service with a private CA
  KB_HOST_CERT_CHAIN        the host chain file when --cert-chain is not given (host configuration, not per VM)

Broker:
  --broker HOST[:PORT]      keybroker service (KB_BROKER_URL, default 127.0.0.1:44444; port 44444 if omitted)
  --broker-ca FILE          use TLS, trusting this CA (PEM); plaintext otherwise, as the kata shim dials simple-kbs
  --broker-timeout SECONDS  per call (default 30)
  --cert-chain FILE         the host's certificate chain, as \`sevctl export --full\` writes it (PDH|PEK|OCA|CEK|ASK|ARK);
                            required except with --simulate, which uses the simulated platform's chain
  --secret GUID,TYPE,ID[,FORMAT]
                            a secret to request (repeatable, at least one). TYPE: bundle|key|resource|report|connection;
                            FORMAT: binary (default) or json. E.g. 736869e5-84f0-4973-92ec-06879ce3da0b,key,default/key/disk
  --description TEXT        LaunchDescription sent with GetSecret (default "launchvm <domain name>")

Expected launch digest (SEV: firmware [+ kernel hashes]; SEV-ES: + one VMSA per vCPU):
  --digest HEX|BASE64       use this digest instead of computing it from the XML's files
  --cpu-type MODEL          guest vCPU model for SEV-ES VMSAs (EPYC, EPYC-v4, EPYC-Rome, EPYC-Milan, EPYC-Genoa, ...);
                            default: the XML's <cpu><model>
  --cpu-sig N               ... or its CPUID(1).EAX signature (e.g. 0xa00f11)
  --cpu-family N --cpu-model N --cpu-stepping N
                            ... or family/model/stepping (host-passthrough guests: the host CPU's)
  --vmsa-fpu legacy|init2   VMSA FPU state: legacy (KVM_SEV_ES_INIT, QEMU >= 9.1 default; default) or init2

Hypervisor backend (one of):
  --backend libvirt         drive libvirt through virsh (default)
    -c, --connect URI       libvirt URI (default $LIBVIRT_DEFAULT_URI or qemu:///system)
    --virsh PATH            virsh binary (default virsh, Debian package libvirt-clients)
  --backend qmp             spawn QEMU with -S and drive it over QMP (query-sev, query-sev-launch-measure,
                            sev-inject-launch-secret, cont); on success QEMU keeps running detached
    --qemu-binary PATH      default qemu-system-x86_64; libs/sev-host-sim/bin/sim-qemu is the simulated one
    --qemu-arg ARG          append ARG to the generated QEMU command line (repeatable; write --qemu-arg=-ARG for
                            arguments that start with a dash)
    --run-dir DIR           session files, QMP socket and QEMU log (default: a new temp dir)
    --start-timeout SECONDS wait this long for the QMP socket (default 30)
  --backend simulate, --simulate
                            the simulated SEV host in this process (synthetic root: the broker must trust it with
                            --trust-root); the guest ends when launchvm exits
    --sim-platform DIR      keep the simulated platform there (created on first use; DIR/root.cert is the ASK|ARK
                            file for the broker's --trust-root); without it a throwaway platform no broker trusts
    --sim-create            only create the platform in --sim-platform DIR (if missing), print where its root.cert
                            is, and exit: start the broker with --trust-root sev-sim=DIR/root.cert, then launch
    --sim-guest-dir DIR     write what the guest's efi_secret driver exposes under
                            DIR/sys/kernel/security/secrets/coco/<guid>

  -h, --help                this help

Exit codes:
${exitCodeTable()}
`;
